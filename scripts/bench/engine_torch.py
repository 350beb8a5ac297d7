# The PyTorch CPU peer of the engine benchmark: same MLP and transformer student, AdamW.
import json, sys
import torch
import torch.nn as nn
from torch_students import TransformerStudent, time_steps

torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 2)
which, steps = sys.argv[1], int(sys.argv[2])
cfg = json.loads(sys.stdin.read())

if which == 'mlp':
    c = cfg['mlp']
    model = nn.Sequential(nn.Linear(c['input'], c['hidden']), nn.ReLU(), nn.Linear(c['hidden'], c['classes']))
    x = torch.randn(c['batch'], c['input'])
    y = torch.randint(0, c['classes'], (c['batch'],))
    batch = (x, y)
else:
    c = cfg['transformer']
    model = TransformerStudent(c)
    x = torch.randint(0, c['vocab'], (c['batch'], c['seq']))
    y = torch.randint(0, c['classes'], (c['batch'],))
    mask = torch.ones(c['batch'], c['seq'], dtype=torch.long)
    batch = ((x, mask), y)

opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
loss_fn = nn.CrossEntropyLoss()
model.train()

def step(_i=0):
    inputs, labels = batch
    opt.zero_grad(set_to_none=True)
    out = model(*inputs) if isinstance(inputs, tuple) else model(inputs)
    loss = loss_fn(out, labels)
    loss.backward()
    opt.step()
    return loss.item()

sec = time_steps(step, 5 if which == 'mlp' else 2, steps)
print(json.dumps({'secondsPerStep': sec, 'torch': torch.__version__, 'threads': torch.get_num_threads()}))
