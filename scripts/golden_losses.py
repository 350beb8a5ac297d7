# Golden values for the distillation losses, computed independently with PyTorch (float64),
# written to test/fixtures/golden/losses.json. Regenerate: /usr/bin/python3 scripts/golden_losses.py
import json, torch
import torch.nn.functional as F

torch.manual_seed(0)
zs = torch.tensor([[1.2, -0.3, 0.5], [0.1, 2.0, -1.0], [-0.5, -0.2, 0.3], [0.0, 0.0, 0.0]], dtype=torch.float64)
zt = torch.tensor([[2.5, -1.0, 0.2], [-0.3, 3.1, 0.4], [0.1, -0.4, 1.7], [-2.0, -1.5, -1.8]], dtype=torch.float64)
y = torch.tensor([0, 1, 2, 1])

def kl(t_logits, s_logits, tt, ts):
    return (F.softmax(t_logits / tt, -1) * (F.log_softmax(t_logits / tt, -1) - F.log_softmax(s_logits / ts, -1))).sum(-1)

out = {"zs": zs.tolist(), "zt": zt.tolist(), "labels": y.tolist(), "cases": []}
ce = F.cross_entropy(zs, y).item()
out["cases"].append({"loss": "ce", "options": {}, "value": ce})
for lam, tau in [(0.0, 2.0), (0.5, 2.0), (0.9, 4.0), (1.0, 1.0)]:
    value = (1 - lam) * ce + lam * tau * tau * kl(zt, zs, tau, tau).mean().item()
    out["cases"].append({"loss": "kd", "options": {"lambda": lam, "tau": tau}, "value": value})

def dtkd(alpha, beta, tau, w, guard="clamp"):
    x = zt.max(-1, keepdim=True).values
    yy = zs.max(-1, keepdim=True).values
    s = x + yy
    ok = s > 1e-6
    safe = torch.where(ok, s, torch.ones_like(s))
    tt = torch.where(ok, 2 * tau * x / safe, torch.full_like(s, tau))
    ts = torch.where(ok, 2 * tau * yy / safe, torch.full_like(s, tau))
    if guard == "clamp":
        tt = tt.clamp(tau / 4, 4 * tau)
        ts = ts.clamp(tau / 4, 4 * tau)
    ldt = (kl(zt, zs, tt, ts) * (tt * ts).squeeze(-1)).mean()
    lkd = tau * tau * kl(zt, zs, tau, tau).mean()
    return (F.cross_entropy(zs, y) + w * (alpha * ldt + beta * lkd)).item()

for alpha, beta, tau, w, guard in [(3, 1, 4, 1, "clamp"), (3, 1, 4, 0.25, "clamp"), (1, 0, 2, 1, "fallback")]:
    out["cases"].append({"loss": "dtkd", "options": {"alpha": alpha, "beta": beta, "tau": tau, "weight": w, "dtkdGuard": guard}, "value": dtkd(alpha, beta, tau, w, guard)})

# LELP loss on a C·S head: (1-α)·softCE(head, q) + α·CE(logsumexp over subclasses, y)
S = 2
head = torch.tensor([[0.3, -0.1, 1.0, 0.2, -0.5, 0.4], [1.1, 0.0, -0.2, 0.9, 0.3, -1.0], [0.0, 0.5, 0.5, 0.0, 1.5, 1.2], [0.2, 0.2, 0.2, 0.2, 0.2, 0.2]], dtype=torch.float64)
q = torch.softmax(torch.tensor([[0.5, 0.1, 0.2, 0.9, 0.3, 0.0], [0.0, 0.4, 1.1, 0.6, 0.2, 0.2], [0.3, 0.3, 0.1, 0.0, 1.0, 0.8], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]], dtype=torch.float64), -1)
soft = -(q * F.log_softmax(head, -1)).sum(-1).mean()
marg = torch.logsumexp(head.view(4, 3, S), -1)
gold = F.cross_entropy(marg, y)
out["lelp"] = {"head": head.tolist(), "targets": q.tolist(), "subclasses": S, "cases": [{"alpha": a, "value": ((1 - a) * soft + a * gold).item()} for a in [0.0, 0.3, 1.0]], "marginal": marg.tolist()}
json.dump(out, open("test/fixtures/golden/losses.json", "w"), indent=1)
print("wrote test/fixtures/golden/losses.json with", len(out["cases"]), "cases")
