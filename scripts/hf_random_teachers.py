# Foreign teachers of real size for the benchmarks: DistilBERT-base and BERT-base sequence classifiers with random weights,
# written as Hugging Face's modeling_distilbert.py / modeling_bert.py write them and exported as Optimum does (opset 14).
# Needs PyTorch (Debian: apt-get install python3-torch); for benchmarks only, never for tests.
"""Usage: python3 scripts/hf_random_teachers.py [--out DIR] [--models distilbert,bert] [--corpus FILE ...]

Writes DIR/distilbert-base-random and DIR/bert-base-random (default DIR: .bench/hf), each a Hugging Face-layout
folder: config.json, tokenizer.json (a 30,522-entry WordPiece vocabulary, BERT's special-token ids, its words taken
from the corpus files by frequency), tokenizer_config.json and onnx/model.onnx with inputs input_ids, attention_mask
(and token_type_ids for BERT), dynamic axes batch_size / sequence_length, and output logits [batch, 2].
"""
import argparse
import collections
import csv
import json
import math
import os
import re
import sys
import unicodedata

import torch
from torch import nn

VOCAB_SIZE = 30522
SPECIALS = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}
BASE = dict(hidden=768, layers=6, heads=12, intermediate=3072, max_positions=512)


# ---- DistilBERT, as transformers' modeling_distilbert.py (eager attention) ----


class DistilEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.word_embeddings = nn.Embedding(VOCAB_SIZE, c["hidden"], padding_idx=0)
        self.position_embeddings = nn.Embedding(c["max_positions"], c["hidden"])
        self.LayerNorm = nn.LayerNorm(c["hidden"], eps=1e-12)
        self.dropout = nn.Dropout(0.1)
        self.register_buffer("position_ids", torch.arange(c["max_positions"]).expand((1, -1)), persistent=False)

    def forward(self, input_ids):
        seq_length = input_ids.size(1)
        position_ids = self.position_ids[:, :seq_length]
        embeddings = self.word_embeddings(input_ids) + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(embeddings))


class DistilSelfAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.n_heads = c["heads"]
        self.dim = c["hidden"]
        self.q_lin = nn.Linear(self.dim, self.dim)
        self.k_lin = nn.Linear(self.dim, self.dim)
        self.v_lin = nn.Linear(self.dim, self.dim)
        self.out_lin = nn.Linear(self.dim, self.dim)
        self.dropout = nn.Dropout(0.1)

    def forward(self, query, key, value, mask):
        bs, q_length, dim = query.size()
        k_length = key.size(1)
        dim_per_head = self.dim // self.n_heads
        mask_reshp = (bs, 1, 1, k_length)

        def shape(x):
            return x.view(bs, -1, self.n_heads, dim_per_head).transpose(1, 2)

        def unshape(x):
            return x.transpose(1, 2).contiguous().view(bs, -1, self.n_heads * dim_per_head)

        q = shape(self.q_lin(query))
        k = shape(self.k_lin(key))
        v = shape(self.v_lin(value))
        q = q / math.sqrt(dim_per_head)
        scores = torch.matmul(q, k.transpose(2, 3))
        mask = (mask == 0).view(mask_reshp).expand_as(scores)
        scores = scores.masked_fill(mask, torch.tensor(torch.finfo(scores.dtype).min))
        weights = self.dropout(nn.functional.softmax(scores, dim=-1))
        context = unshape(torch.matmul(weights, v))
        return self.out_lin(context)


class DistilFFN(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.lin1 = nn.Linear(c["hidden"], c["intermediate"])
        self.lin2 = nn.Linear(c["intermediate"], c["hidden"])
        self.dropout = nn.Dropout(0.1)

    def forward(self, x):
        return self.dropout(self.lin2(nn.functional.gelu(self.lin1(x))))


class DistilBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.attention = DistilSelfAttention(c)
        self.sa_layer_norm = nn.LayerNorm(c["hidden"], eps=1e-12)
        self.ffn = DistilFFN(c)
        self.output_layer_norm = nn.LayerNorm(c["hidden"], eps=1e-12)

    def forward(self, x, attn_mask):
        sa_output = self.sa_layer_norm(self.attention(x, x, x, attn_mask) + x)
        return self.output_layer_norm(self.ffn(sa_output) + sa_output)


class DistilBertForSequenceClassification(nn.Module):
    def __init__(self, c, num_labels=2):
        super().__init__()
        self.embeddings = DistilEmbeddings(c)
        self.layer = nn.ModuleList([DistilBlock(c) for _ in range(c["layers"])])
        self.pre_classifier = nn.Linear(c["hidden"], c["hidden"])
        self.classifier = nn.Linear(c["hidden"], num_labels)
        self.dropout = nn.Dropout(0.2)

    def forward(self, input_ids, attention_mask):
        hidden_state = self.embeddings(input_ids)
        for block in self.layer:
            hidden_state = block(hidden_state, attention_mask)
        pooled_output = hidden_state[:, 0]
        pooled_output = nn.ReLU()(self.pre_classifier(pooled_output))
        return self.classifier(self.dropout(pooled_output))


# ---- BERT, as transformers' modeling_bert.py (eager attention, extended mask with the dtype's minimum) ----


class BertEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.word_embeddings = nn.Embedding(VOCAB_SIZE, c["hidden"], padding_idx=0)
        self.position_embeddings = nn.Embedding(c["max_positions"], c["hidden"])
        self.token_type_embeddings = nn.Embedding(2, c["hidden"])
        self.LayerNorm = nn.LayerNorm(c["hidden"], eps=1e-12)
        self.dropout = nn.Dropout(0.1)
        self.register_buffer("position_ids", torch.arange(c["max_positions"]).expand((1, -1)), persistent=False)

    def forward(self, input_ids, token_type_ids):
        position_ids = self.position_ids[:, : input_ids.size(1)]
        embeddings = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        embeddings = embeddings + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(embeddings))


class BertSelfAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.num_attention_heads = c["heads"]
        self.attention_head_size = c["hidden"] // c["heads"]
        self.all_head_size = c["hidden"]
        self.query = nn.Linear(c["hidden"], c["hidden"])
        self.key = nn.Linear(c["hidden"], c["hidden"])
        self.value = nn.Linear(c["hidden"], c["hidden"])
        self.dropout = nn.Dropout(0.1)

    def transpose_for_scores(self, x):
        new_x_shape = x.size()[:-1] + (self.num_attention_heads, self.attention_head_size)
        return x.view(new_x_shape).permute(0, 2, 1, 3)

    def forward(self, hidden_states, attention_mask):
        query_layer = self.transpose_for_scores(self.query(hidden_states))
        key_layer = self.transpose_for_scores(self.key(hidden_states))
        value_layer = self.transpose_for_scores(self.value(hidden_states))
        attention_scores = torch.matmul(query_layer, key_layer.transpose(-1, -2))
        attention_scores = attention_scores / math.sqrt(self.attention_head_size)
        attention_scores = attention_scores + attention_mask
        attention_probs = self.dropout(nn.functional.softmax(attention_scores, dim=-1))
        context_layer = torch.matmul(attention_probs, value_layer).permute(0, 2, 1, 3).contiguous()
        return context_layer.view(context_layer.size()[:-2] + (self.all_head_size,))


class BertLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        h = c["hidden"]
        self.self_attention = BertSelfAttention(c)
        self.attention_output = nn.Linear(h, h)
        self.attention_norm = nn.LayerNorm(h, eps=1e-12)
        self.intermediate = nn.Linear(h, c["intermediate"])
        self.output = nn.Linear(c["intermediate"], h)
        self.output_norm = nn.LayerNorm(h, eps=1e-12)
        self.dropout = nn.Dropout(0.1)

    def forward(self, hidden_states, attention_mask):
        attention = self.self_attention(hidden_states, attention_mask)
        attention_output = self.attention_norm(self.dropout(self.attention_output(attention)) + hidden_states)
        intermediate = nn.functional.gelu(self.intermediate(attention_output))
        return self.output_norm(self.dropout(self.output(intermediate)) + attention_output)


class BertForSequenceClassification(nn.Module):
    def __init__(self, c, num_labels=2):
        super().__init__()
        self.embeddings = BertEmbeddings(c)
        self.layer = nn.ModuleList([BertLayer(c) for _ in range(c["layers"])])
        self.pooler = nn.Linear(c["hidden"], c["hidden"])
        self.dropout = nn.Dropout(0.1)
        self.classifier = nn.Linear(c["hidden"], num_labels)

    def forward(self, input_ids, attention_mask, token_type_ids):
        # modeling_utils.get_extended_attention_mask: [B, 1, 1, S], 0 where attended, the dtype's minimum where padded.
        extended = attention_mask[:, None, None, :].to(torch.float32)
        extended = (1.0 - extended) * torch.finfo(torch.float32).min
        hidden_states = self.embeddings(input_ids, token_type_ids)
        for layer in self.layer:
            hidden_states = layer(hidden_states, extended)
        pooled_output = torch.tanh(self.pooler(hidden_states[:, 0]))
        return self.classifier(self.dropout(pooled_output))


def init_weights(model, seed):
    """PreTrainedModel._init_weights: N(0, 0.02) for Linear and Embedding, zero biases, LayerNorm 1 and 0."""
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            m.weight.data.normal_(mean=0.0, std=0.02)
            m.bias.data.zero_()
        elif isinstance(m, nn.Embedding):
            m.weight.data.normal_(mean=0.0, std=0.02)
            if m.padding_idx is not None:
                m.weight.data[m.padding_idx].zero_()
        elif isinstance(m, nn.LayerNorm):
            m.weight.data.fill_(1.0)
            m.bias.data.zero_()


# ---- tokenizer.json: BERT's normalizer, pre-tokenizer and template, a vocabulary from the corpus ----

WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def normalize(text):
    text = unicodedata.normalize("NFD", text.lower())
    return "".join(ch for ch in text if unicodedata.category(ch) != "Mn")


def corpus_texts(paths):
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as f:
            if path.endswith(".csv"):
                for row in csv.reader(f):
                    if row:
                        yield row[-1]
            else:
                for line in f:
                    yield re.sub(r"^(__label__\S+\s*)+", "", line)


def wordpiece_vocab(paths):
    """BERT's ids for the specials, single characters and their ## forms, then corpus words by frequency, to 30,522."""
    words = collections.Counter()
    chars = collections.Counter()
    for text in corpus_texts(paths):
        for w in WORD.findall(normalize(text)):
            words[w] += 1
            chars.update(w)
    vocab = {}
    unused = 0
    # Ids 0 and 100-103 are BERT's specials; the ones between are [unusedN] as in bert-base-uncased.
    for i in range(104):
        name = next((k for k, v in SPECIALS.items() if v == i), None)
        if name is None:
            name = f"[unused{unused}]"
            unused += 1
        vocab[name] = i
    pieces = [c for c, _ in chars.most_common()] + ["##" + c for c, _ in chars.most_common()]
    pieces += [w for w, _ in words.most_common() if len(w) > 1]
    for p in pieces:
        if len(vocab) >= VOCAB_SIZE:
            break
        vocab.setdefault(p, len(vocab))
    for k in range(len(vocab), VOCAB_SIZE):  # a small corpus: fill with more unused entries
        vocab[f"[unused{unused}]"] = k
        unused += 1
    return vocab


def tokenizer_json(vocab):
    special = [
        {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
        for t, i in sorted(SPECIALS.items(), key=lambda kv: kv[1])
    ]
    cls, sep = SPECIALS["[CLS]"], SPECIALS["[SEP]"]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": special,
        "normalizer": {
            "type": "BertNormalizer",
            "clean_text": True,
            "handle_chinese_chars": True,
            "strip_accents": None,
            "lowercase": True,
        },
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [
                {"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
            ],
            "pair": [
                {"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
                {"Sequence": {"id": "B", "type_id": 1}},
                {"SpecialToken": {"id": "[SEP]", "type_id": 1}},
            ],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [cls], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [sep], "tokens": ["[SEP]"]},
            },
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {
            "type": "WordPiece",
            "unk_token": "[UNK]",
            "continuing_subword_prefix": "##",
            "max_input_chars_per_word": 100,
            "vocab": vocab,
        },
    }


def tokenizer_config(kind, c):
    """tokenizer_config.json as the Hub's bert-base-uncased / distilbert-base-uncased have it (transformers.js reads the specials here)."""
    return {
        "do_lower_case": True,
        "model_max_length": c["max_positions"],
        "tokenizer_class": "DistilBertTokenizer" if kind == "distilbert" else "BertTokenizer",
        "cls_token": "[CLS]",
        "mask_token": "[MASK]",
        "pad_token": "[PAD]",
        "sep_token": "[SEP]",
        "unk_token": "[UNK]",
        "clean_up_tokenization_spaces": True,
        "strip_accents": None,
        "tokenize_chinese_chars": True,
    }


def config_json(kind, c):
    labels = {"id2label": {"0": "NEGATIVE", "1": "POSITIVE"}, "label2id": {"NEGATIVE": 0, "POSITIVE": 1}}
    common = {"vocab_size": VOCAB_SIZE, "max_position_embeddings": c["max_positions"], "pad_token_id": 0, "torch_dtype": "float32"}
    if kind == "distilbert":
        return {
            "architectures": ["DistilBertForSequenceClassification"],
            "model_type": "distilbert",
            "dim": c["hidden"],
            "n_layers": c["layers"],
            "n_heads": c["heads"],
            "hidden_dim": c["intermediate"],
            "activation": "gelu",
            # Not DistilBERT's own keys: kd's bench reads these to count FLOPs.
            "hidden_size": c["hidden"],
            "num_hidden_layers": c["layers"],
            "num_attention_heads": c["heads"],
            "intermediate_size": c["intermediate"],
            **common,
            **labels,
            "kd_note": "random weights (scripts/hf_random_teachers.py), for benchmarks",
        }
    return {
        "architectures": ["BertForSequenceClassification"],
        "model_type": "bert",
        "hidden_size": c["hidden"],
        "num_hidden_layers": c["layers"],
        "num_attention_heads": c["heads"],
        "intermediate_size": c["intermediate"],
        "hidden_act": "gelu",
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
        **common,
        **labels,
        "kd_note": "random weights (scripts/hf_random_teachers.py), for benchmarks",
    }


def export(kind, out, vocab, seed):
    c = dict(BASE, layers=6 if kind == "distilbert" else 12)
    model = DistilBertForSequenceClassification(c) if kind == "distilbert" else BertForSequenceClassification(c)
    init_weights(model, seed)
    model.eval()
    os.makedirs(os.path.join(out, "onnx"), exist_ok=True)
    ids = torch.randint(1000, VOCAB_SIZE, (2, 16))
    mask = torch.ones(2, 16, dtype=torch.int64)
    mask[1, 12:] = 0
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if kind == "bert" else [])
    args = (ids, mask) + ((torch.zeros_like(ids),) if kind == "bert" else ())
    axes = {n: {0: "batch_size", 1: "sequence_length"} for n in names}
    axes["logits"] = {0: "batch_size"}
    path = os.path.join(out, "onnx", "model.onnx")
    with torch.no_grad():
        torch.onnx.export(
            model, args, path, input_names=names, output_names=["logits"], dynamic_axes=axes, opset_version=14, do_constant_folding=True
        )
        reference = model(*args)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config_json(kind, c), f, indent=2)
    with open(os.path.join(out, "tokenizer.json"), "w") as f:
        json.dump(tokenizer_json(vocab), f)
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(tokenizer_config(kind, c), f, indent=2)
    params = sum(p.numel() for p in model.parameters())
    print(json.dumps({"model": out, "kind": kind, "parameters": params, "reference_logits": reference.tolist()}))


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    shared = os.environ.get("KD_SHARED_DIR", os.path.join(root, "..", "shared"))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(root, ".bench", "hf"))
    ap.add_argument("--models", default="distilbert,bert")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--corpus",
        nargs="*",
        default=[
            os.path.join(shared, "datasets", "sentiment140", "train_random_sample_33477.csv"),
            os.path.join(shared, "datasets", "amazon_polarity", "test_random_sample_6814.ft.txt"),
        ],
    )
    a = ap.parse_args()
    missing = [p for p in a.corpus if not os.path.exists(p)]
    if missing:
        sys.exit(f"hf_random_teachers.py: corpus file {missing[0]} not found; pass --corpus FILE ... or set KD_SHARED_DIR")
    vocab = wordpiece_vocab(a.corpus)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    for kind in a.models.split(","):
        if kind not in ("distilbert", "bert"):
            sys.exit(f"hf_random_teachers.py: --models: unknown model '{kind}'. Known: distilbert, bert")
        export(kind, os.path.join(a.out, f"{kind}-base-random"), vocab, a.seed)


if __name__ == "__main__":
    main()
