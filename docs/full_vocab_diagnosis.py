"""Why a full_vocab-fine-tuned demo model collapses under distillation (docs/demo.md): diagnostics.

    python docs/full_vocab_diagnosis.py DATA_DIR CKPT [CKPT ...]   # test rows: class-logit geometry at the mask
    python docs/full_vocab_diagnosis.py --delta CKPT_A CKPT_B      # relative weight change per parameter group

Not part of the pipeline; reads demo checkpoints (run_script/demo.sh) only.
"""
import sys, math
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "src"))
import numpy as np
import torch
import torch.nn.functional as F
from alsace.data import load_split
from alsace.features import Collator, Featurizer
from alsace.modeling import load_tokenizer_and_model
from alsace.scoring import class_logits, mlm_head_parts
from alsace.tasks import get_task

torch.set_num_threads(1)


def delta(a_dir, b_dir):
    from safetensors.torch import load_file
    a, b = (load_file(f"{d}/model.safetensors") for d in (a_dir, b_dir))
    groups = {}
    for k in a:
        if k not in b:
            continue
        g = ("word emb (tied decoder)" if "word_embeddings" in k else "encoder attn" if "attention" in k
             else "encoder ffn" if ".encoder." in k
             else "lm bias" if k.startswith("lm_head") and k.endswith("bias") and ("decoder" in k or k == "lm_head.bias")
             else "lm_head transform" if k.startswith("lm_head") else "other emb")
        s = groups.setdefault(g, [0.0, 0.0])
        s[0] += (b[k].float() - a[k].float()).norm().item() ** 2
        s[1] += a[k].float().norm().item() ** 2
    for g, (dd, n) in groups.items():
        print(f"{g:25s} |delta|/|w| = {(dd / max(n, 1e-12)) ** 0.5:.4f}")


if sys.argv[1] == "--delta":
    delta(sys.argv[2], sys.argv[3])
    sys.exit()
data_dir = sys.argv[1]
task = get_task(f"{data_dir}/demo/task.json")
LANGS = task.languages


def feats(tok, model, split, n):
    fz = Featurizer(tok, task, "prompt", 64, 0, "en", languages=tuple(LANGS))
    out = {}
    for lang in LANGS:
        rows = load_split(task, split, lang, data_dir)[:n]
        out[lang] = [fz.encode_row(row, lang) for row in rows]
    return out


@torch.no_grad()
def run(model, fl, coll):
    cls_all, voc_all, lab = [], [], []
    for i in range(0, len(fl), 250):
        b = coll(fl[i:i + 250])
        c, v = class_logits(model, b, return_vocab=True)
        cls_all.append(c); voc_all.append(v)
        if "labels" in b: lab.append(b["labels"])
    return torch.cat(cls_all), torch.cat(voc_all), (torch.cat(lab) if lab else None), b["label_token_ids"][0]


for ck in sys.argv[2:]:
    tok, model = load_tokenizer_and_model(ck, "prompt", task, 0)
    model.eval()
    coll = Collator(tok.pad_token_id)
    f = feats(tok, model, "test", 1000)
    _, W, bias = mlm_head_parts(model)
    print(f"\n=== {ck}")
    ids = None
    extra = []
    for lang in LANGS:
        c, v, y, ids = run(model, f[lang], coll)
        p = c.softmax(-1)
        ent = -(p * p.clamp_min(1e-12).log()).sum(-1)
        top2 = c.topk(2, -1).values
        margin = top2[:, 0] - top2[:, 1]
        mass = v.softmax(-1).gather(1, ids.expand(len(v), -1)).sum(-1)
        pred = c.argmax(-1)
        shares = torch.bincount(pred, minlength=c.shape[1]).float() / len(pred)
        acc = (pred == y).float().mean().item() * 100
        cc = c - c.mean(-1, keepdim=True)
        indep = cc.std(0).mean().item()  # how much the (centred) class logits vary over inputs
        constant = cc.mean(0).norm().item() / cc.norm(dim=-1).mean().item()  # share of the input-independent part
        extra.append(f"{lang}: input-dependence(std over rows) {indep:.3f} | |mean centred logit| / mean |centred logit| {constant:.3f}")
        rank = (v > c.max(-1, keepdim=True).values).sum(-1).float()  # vocab words above the best label word
        print(f"{lang:4s} acc {acc:5.1f} | class logit mean {c.mean():7.2f} spread(std over classes) {c.std(-1).mean():6.3f} "
              f"margin {margin.mean():6.3f} (median {margin.median():6.3f}) | entropy {ent.mean():.3f}/{math.log(4):.3f} "
              f"maxp {p.max(-1).values.mean():.3f} | label-word mass in vocab softmax {mass.mean():.3f} "
              f"| #vocab above best label {rank.mean():5.1f} | mean p per class {[round(x, 3) for x in p.mean(0).tolist()]} "
              f"shares {[round(x, 2) for x in shares.tolist()]}")
    print("\n".join(extra))
    emb = model.get_input_embeddings().weight
    print("tied decoder == embeddings:", W.data_ptr() == emb.data_ptr())
    print("label ids", ids.tolist(), "bias", [round(x, 3) for x in bias[ids].tolist()],
          "row norms", [round(x, 3) for x in W[ids].norm(dim=-1).tolist()],
          "| vocab bias mean", round(bias.mean().item(), 3), "row norm mean", round(W.norm(dim=-1).mean().item(), 3))
    Wl = F.normalize(W[ids], dim=-1)
    print("cosine between label rows\n", np.round((Wl @ Wl.T).detach().numpy(), 3))
