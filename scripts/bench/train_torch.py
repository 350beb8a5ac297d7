# The PyTorch CPU peer of the train benchmark: the same students with the same `kd` loss
# ((1-λ)·CE + λ·τ²·KL(teacher_τ ‖ student_τ)), AdamW; the n-gram table as a sparse
# EmbeddingBag (mean) updated by SparseAdam, as a PyTorch user would write a fastText-like model.
import json, sys
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch_students import TransformerStudent, time_steps

torch.set_num_threads(2)
which, steps, arg = sys.argv[1], int(sys.argv[2]), sys.argv[3]
LAMBDA = 0.5

def kd_loss(student, labels, teacher, tau):
    ce = F.cross_entropy(student, labels)
    kl = F.kl_div(F.log_softmax(student / tau, -1), F.log_softmax(teacher / tau, -1), reduction='batchmean', log_target=True)
    return (1 - LAMBDA) * ce + LAMBDA * tau * tau * kl

if which == 'ngram-kd':
    cfg = json.load(open(arg))
    emb = nn.EmbeddingBag(cfg['buckets'], cfg['dim'], mode='mean', sparse=True)
    head = nn.Linear(cfg['dim'], cfg['classes'])
    opt_emb = torch.optim.SparseAdam(list(emb.parameters()), lr=5e-3)
    opt_head = torch.optim.AdamW(head.parameters(), lr=5e-3)
    batches = []
    for b in cfg['batches']:
        rows = len(b['labels'])
        ids = torch.tensor(b['ids'], dtype=torch.long).view(rows, b['width'])
        mask = torch.tensor(b['mask'], dtype=torch.float32).view(rows, b['width'])
        batches.append((ids, mask, torch.tensor(b['labels']), torch.tensor(b['teacher'], dtype=torch.float32).view(rows, cfg['classes'])))
    def masked_mean(ids, mask):
        # EmbeddingBag over the unpadded features of each row (offsets form).
        flat = ids[mask > 0]
        counts = mask.sum(1).long()
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)[:-1]])
        return emb(flat, offsets)
    def step(i):
        ids, mask, labels, teacher = batches[i % len(batches)]
        opt_emb.zero_grad(set_to_none=True); opt_head.zero_grad(set_to_none=True)
        loss = kd_loss(head(masked_mean(ids, mask)), labels, teacher, cfg['tau'])
        loss.backward()
        opt_emb.step(); opt_head.step()
    sec = time_steps(step, 3, steps)
    batch = len(cfg['batches'][0]['labels'])
else:
    c = json.loads(arg)
    model = TransformerStudent(c)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, c['vocab'], (c['batch'], c['seq']), generator=g)
    mask = torch.ones(c['batch'], c['seq'], dtype=torch.long)
    labels = torch.randint(0, c['classes'], (c['batch'],), generator=g)
    teacher = torch.randn(c['batch'], c['classes'], generator=g)
    def step(i):
        opt.zero_grad(set_to_none=True)
        loss = kd_loss(model(ids, mask), labels, teacher, 2.0)
        loss.backward()
        opt.step()
    sec = time_steps(step, 2, steps)
    batch = c['batch']
print(json.dumps({'secondsPerStep': sec, 'batch': batch, 'torch': torch.__version__, 'threads': torch.get_num_threads()}))
