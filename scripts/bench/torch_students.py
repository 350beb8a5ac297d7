# PyTorch peers' shared pieces: the BERT-style transformer student (the same architecture as
# kd's: embeddings + LayerNorm, post-norm encoder layers with GELU, tanh pooler on [CLS], linear
# head) and a step timer.
import time
import torch.nn as nn
import torch


class TransformerStudent(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.emb = nn.Embedding(c['vocab'], c['hidden'])
        self.pos = nn.Embedding(c['seq'], c['hidden'])
        self.ln = nn.LayerNorm(c['hidden'], eps=1e-12)
        self.drop = nn.Dropout(c['dropout'])
        layer = nn.TransformerEncoderLayer(c['hidden'], c['heads'], c['intermediate'], c['dropout'], activation='gelu', batch_first=True, norm_first=False)
        self.enc = nn.TransformerEncoder(layer, c['layers'], enable_nested_tensor=False)
        self.pool = nn.Linear(c['hidden'], c['hidden'])
        self.cls = nn.Linear(c['hidden'], c['classes'])

    def forward(self, ids, mask):
        h = self.drop(self.ln(self.emb(ids) + self.pos.weight[: ids.shape[1]]))
        h = self.enc(h, src_key_padding_mask=(mask == 0))
        return self.cls(self.drop(torch.tanh(self.pool(h[:, 0]))))


def time_steps(step, warmup, steps):
    """Seconds per call of step(i), after `warmup` untimed calls."""
    for i in range(warmup):
        step(i)
    t0 = time.perf_counter()
    for i in range(steps):
        step(i)
    return (time.perf_counter() - t0) / steps
