# The PyTorch CPU peer of the engine benchmark: same MLP and transformer student, AdamW.
import json, math, sys, time
import torch
import torch.nn as nn

torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 2)
which, steps = sys.argv[1], int(sys.argv[2])
cfg = json.loads(sys.stdin.read())

def time_steps(step, warmup, steps):
    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps

if which == 'mlp':
    c = cfg['mlp']
    model = nn.Sequential(nn.Linear(c['input'], c['hidden']), nn.ReLU(), nn.Linear(c['hidden'], c['classes']))
    x = torch.randn(c['batch'], c['input'])
    y = torch.randint(0, c['classes'], (c['batch'],))
    batch = (x, y)
else:
    c = cfg['transformer']
    class Student(nn.Module):
        def __init__(self):
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
    model = Student()
    x = torch.randint(0, c['vocab'], (c['batch'], c['seq']))
    y = torch.randint(0, c['classes'], (c['batch'],))
    mask = torch.ones(c['batch'], c['seq'], dtype=torch.long)
    batch = ((x, mask), y)

opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
loss_fn = nn.CrossEntropyLoss()
model.train()

def step():
    inputs, labels = batch
    opt.zero_grad(set_to_none=True)
    out = model(*inputs) if isinstance(inputs, tuple) else model(inputs)
    loss = loss_fn(out, labels)
    loss.backward()
    opt.step()
    return loss.item()

sec = time_steps(step, 5 if which == 'mlp' else 2, steps)
print(json.dumps({'secondsPerStep': sec, 'torch': torch.__version__, 'threads': torch.get_num_threads()}))
