#!/usr/bin/env python3
"""Write ropo's bad-input corpus: small malformed files, each broken in one way.

Run from the repository root (python3, standard library only):

    python3 tests/bad_inputs/make_bad_inputs.py

It deletes and rewrites data/, configs/, tokenizers/ and checkpoints/ beside this script, then
README.md, which lists every case with what is wrong with it (the descriptions below). The
output is deterministic, so running it again changes nothing. `xtask/tests/bad_inputs.rs` runs
each case through the command line and checks the error.
"""

import gzip
import hashlib
import json
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
FOLDERS = ("data", "configs", "tokenizers", "checkpoints")

# (path relative to HERE, what is wrong), in README order.
CASES = []


def case(path, description):
    CASES.append((path, description))
    return os.path.join(HERE, path)


def write(path, content):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    mode = "wb" if isinstance(content, bytes) else "w"
    with open(path, mode) as f:
        f.write(content)


def lines(*records):
    """JSONL text: dicts are dumped, strings written as they are."""
    return "".join(
        (r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records
    )


def gz(data):
    """gzip with a fixed mtime, so the bytes are reproducible."""
    return gzip.compress(data, mtime=0)


# --------------------------------------------------------------------------------------------
# data: preference files, read by `xtask data inspect FILE`

GOOD = {"prompt": "Hi", "chosen": "Hello!", "rejected": "Go away."}


def msg(role, content):
    return {"role": role, "content": content}


def data():
    def d(name, description, content):
        write(case("data/" + name, description), content)

    d("empty.jsonl", "a file of zero bytes", "")
    d("blank_lines.jsonl", "only blank and whitespace lines: no records", "\n  \n\t\n")
    d("not_json.jsonl", "line 2 is not JSON", lines(GOOD, "prompt: Hi, chosen: Hello"))
    d("truncated_json.jsonl", "line 2 ends mid-object", lines(GOOD, json.dumps(GOOD)[:25]))
    d("not_an_object.jsonl", "line 1 is a JSON array, not an object", lines([1, 2, 3]))
    d("string_record.jsonl", "line 1 is a JSON string", lines('"prompt"'))
    d(
        "unknown_shape.jsonl",
        "line 1 has no fields any format reads (`question`, `answer`)",
        lines({"question": "Hi", "answer": "Hello"}),
    )
    d(
        "invalid_utf8.jsonl",
        "line 3 holds a byte sequence that is not UTF-8 (a Latin-1 `é`)",
        lines(GOOD, GOOD).encode() + b'{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}\n',
    )
    d("nul_bytes.jsonl", "line 1 is NUL bytes (a zero-filled file)", b"\0" * 64 + b"\n")
    d(
        "lone_surrogate.jsonl",
        "line 2 escapes a lone UTF-16 surrogate (`\\ud800`), which is no character",
        lines(GOOD, '{"prompt": "\\ud800", "chosen": "a", "rejected": "b"}'),
    )
    d(
        "deeply_nested.jsonl",
        "line 1 nests arrays 200 deep, past the JSON parser's recursion limit",
        lines('{"prompt": ' + "[" * 200 + "]" * 200 + ', "chosen": "a", "rejected": "b"}'),
    )
    d(
        "generic_missing_rejected.jsonl",
        "generic: line 2 has no `rejected`",
        lines(GOOD, {"prompt": "Hi", "chosen": "Hello!"}),
    )
    d(
        "generic_chosen_null.jsonl",
        "generic: line 2's `chosen` is null",
        lines(GOOD, {"prompt": "Hi", "chosen": None, "rejected": "b"}),
    )
    d(
        "generic_chosen_number.jsonl",
        "generic: line 3's `chosen` is a number",
        lines(GOOD, GOOD, {"prompt": "Hi", "chosen": 7, "rejected": "b"}),
    )
    d(
        "generic_empty_response.jsonl",
        "generic: line 2's `rejected` is the empty string",
        lines(GOOD, {"prompt": "Hi", "chosen": "Hello!", "rejected": ""}),
    )
    def hh(chosen, rejected):
        return {"chosen": "\n\nHuman: " + chosen, "rejected": "\n\nHuman: " + rejected}

    d(
        "mixed_formats.jsonl",
        "line 1 is generic, line 2 an HH transcript pair without `prompt`",
        lines(GOOD, hh("Hi\n\nAssistant: Hello!", "Hi\n\nAssistant: No.")),
    )
    d(
        "hh_no_assistant.jsonl",
        "hh: line 1's `chosen` has no `\\n\\nAssistant:` turn",
        lines({"chosen": "Human: Hi. Bot: Hello!", "rejected": "Human: Hi. Bot: No."}),
    )
    d(
        "hh_no_shared_prompt.jsonl",
        "hh: line 2's transcripts share no text up to an `\\n\\nAssistant:`",
        lines(
            hh("Hi\n\nAssistant: Hello!", "Hi\n\nAssistant: No."),
            hh("Hi\n\nAssistant: Hello!", "Bye\n\nAssistant: Bye."),
        ),
    )
    trl_prompt = [msg("user", "Hi")]
    answer = msg("assistant", "No.")
    d(
        "trl_wrong_role.jsonl",
        "trl: line 1's `chosen` answer has role `user`",
        lines({"prompt": trl_prompt, "chosen": [msg("user", "Hello!")], "rejected": [answer]}),
    )
    d(
        "trl_message_not_object.jsonl",
        "trl: line 1's `rejected[0]` is a string, not a message",
        lines({"prompt": trl_prompt, "chosen": [msg("assistant", "Hello!")], "rejected": ["No."]}),
    )
    d(
        "trl_content_number.jsonl",
        "trl: line 1's `prompt[0].content` is a number",
        lines({"prompt": [msg("user", 3)], "chosen": [msg("assistant", "Hi!")], "rejected": [answer]}),
    )
    d(
        "trl_missing_role.jsonl",
        "trl: line 1's `chosen[0]` has no `role`",
        lines({"prompt": trl_prompt, "chosen": [{"content": "a"}], "rejected": [msg("assistant", "b")]}),
    )
    d(
        "trl_two_answers.jsonl",
        "trl: line 1's `chosen` holds two assistant messages after the prompt",
        lines({
            "prompt": trl_prompt,
            "chosen": [msg("assistant", "a"), msg("assistant", "b")],
            "rejected": [msg("assistant", "c")],
        }),
    )
    d(
        "trl_empty_prompt.jsonl",
        "trl: line 1's `prompt` is an empty list",
        lines({"prompt": [], "chosen": [msg("assistant", "a")], "rejected": [msg("assistant", "b")]}),
    )
    d(
        "trl_implicit_no_shared_prompt.jsonl",
        "trl (implicit prompt): line 1's conversations share no message before the answer",
        lines({
            "chosen": [msg("user", "Hi"), msg("assistant", "a")],
            "rejected": [msg("user", "Bye"), msg("assistant", "b")],
        }),
    )
    def summary(**over):
        return {
            "info": {"post": "My cat.", "title": "Cats", "subreddit": "cats"},
            "summaries": [{"text": "cat"}, {"text": "dog"}],
            "choice": 0,
            **over,
        }

    d("summarize_choice_2.jsonl", "summarize: line 1's `choice` is 2", lines(summary(choice=2)))
    d(
        "summarize_one_summary.jsonl",
        "summarize: line 1's `summaries` holds one summary",
        lines(summary(summaries=[{"text": "cat"}])),
    )
    d(
        "summarize_post_missing.jsonl",
        "summarize: line 2's `info` has no `post`",
        lines(summary(), summary(info={"title": "Cats"})),
    )
    d(
        "summarize_title_number.jsonl",
        "summarize: line 1's `info.title` is a number",
        lines(summary(info={"post": "My cat.", "title": 5})),
    )
    d(
        "summarize_summary_text_null.jsonl",
        "summarize: line 1's `summaries[1].text` is null",
        lines(summary(summaries=[{"text": "cat"}, {"text": None}])),
    )
    d(
        "ultrafeedback_context_differs.jsonl",
        "ultrafeedback: line 1's `rejected` conversation has another user turn than `chosen`",
        lines({
            "prompt": "Hi",
            "chosen": [msg("user", "Hi"), msg("assistant", "Hello!")],
            "rejected": [msg("user", "Bye"), msg("assistant", "No.")],
        }),
    )
    d(
        "ultrafeedback_last_not_assistant.jsonl",
        "ultrafeedback: line 1's `chosen` ends with a user message",
        lines({
            "prompt": "Hi",
            "chosen": [msg("assistant", "Hello!"), msg("user", "Hi")],
            "rejected": [msg("user", "Hi"), msg("assistant", "No.")],
        }),
    )
    d(
        "orca_no_messages.jsonl",
        "orca: line 1's `input.messages` is empty",
        lines({
            "input": {"messages": []},
            "preferred_output": [msg("assistant", "a")],
            "non_preferred_output": [msg("assistant", "b")],
        }),
    )
    d(
        "orca_input_string.jsonl",
        "orca: line 1's `input` is a string, not an object",
        lines({
            "input": "Hi",
            "preferred_output": [msg("assistant", "a")],
            "non_preferred_output": [msg("assistant", "b")],
        }),
    )
    d(
        "orca_output_not_list.jsonl",
        "orca: line 1's `non_preferred_output` is an object, not a list of messages",
        lines({
            "input": {"messages": [msg("user", "Hi")]},
            "preferred_output": [msg("assistant", "a")],
            "non_preferred_output": msg("assistant", "b"),
        }),
    )

    two = lines(GOOD, GOOD).encode()
    d("gz_truncated.jsonl.gz", "gzip cut in the middle of its stream", gz(two * 4)[:30])
    bad_crc = bytearray(gz(two))
    bad_crc[-8] ^= 0xFF
    d("gz_bad_crc.jsonl.gz", "gzip whose CRC-32 trailer does not match the data", bytes(bad_crc))
    d("gz_garbage.jsonl.gz", "the gzip magic bytes followed by garbage",
      b"\x1f\x8b" + b"not a deflate stream" * 2)
    d("gz_empty.jsonl.gz", "a valid gzip of nothing: no records", gz(b""))
    d("gz_bad_line.jsonl.gz", "a valid gzip whose line 3 is not JSON", gz(two + b"{oops\n"))
    d(
        "plain_named_gz.jsonl.gz",
        "named `.gz` but plain JSONL, broken at line 2 (read by content, not name)",
        lines(GOOD, {"prompt": "Hi"}),
    )


# --------------------------------------------------------------------------------------------
# configs: TOML experiment configs, run by `xtask train --quiet --config FILE --out DIR`

SMALL = """\
losses = ["sigmoid"]
noise = [0.0]
seeds = 1
"""

DATASET = """\
losses = ["sigmoid"]
noise = [0.0]
seeds = 1

[dataset]
model = "../../../crates/ropo-models/tests/fixtures/llama"
tokenizer = "../../../../shared/assets/models/tok512.bin"
pairs = "../../../../shared/assets/preferences/helpful-base-test.jsonl.gz"
template = "hh"
max_length = 64
max_prompt_length = 48
heldout = 0.2
split_seed = 0

[sft]
steps = 1
batch = 4
lr = 1e-3

[preference]
pairs = 0
steps = 1
batch = 4
lr = 1e-3
warmup = 0
beta = 0.1
alpha = 14.0
epsilon = 0.2
"""


def preference(**over):
    """A `[preference]` table with `over` replacing its values."""
    values = {"pairs": 8, "steps": 1, "batch": 4, "lr": "1e-3", "warmup": 0, "beta": 0.1,
              "alpha": 14.0, "epsilon": 0.2, **over}
    return "[preference]\n" + "".join(f"{k} = {v}\n" for k, v in values.items())


def model(hidden=32, heads=4, intermediate=64):
    """A `[model]` table of 2 layers."""
    return f"[model]\nhidden = {hidden}\nlayers = 2\nheads = {heads}\nintermediate = {intermediate}\n"


def task(symbols=8, length=4, quality=0.5):
    """A `[task]` table."""
    return f"[task]\nsymbols = {symbols}\nlength = {length}\nsft_quality = {quality}\n"


def configs():
    def c(name, description, text):
        write(case("configs/" + name, description), text)

    sigmoid = 'losses = ["sigmoid"]\n'
    no_tie = "so no pair has a preference"
    c("syntax_error.toml", "line 2 is not TOML (`noise = [0.0,`)", sigmoid + "noise = [0.0,\n")
    c("unknown_field.toml", "top-level field `lossses` (a typo) does not exist",
      SMALL + 'lossses = ["ropo"]\n')
    c("unknown_nested_field.toml", "`[sft]` has a field `stepz`", SMALL + "[sft]\nstepz = 3\n")
    c("wrong_type.toml", "`seeds` is a string", sigmoid + 'seeds = "three"\n')
    c("negative_seeds.toml", "`seeds` is -1 (an unsigned count)", sigmoid + "seeds = -1\n")
    c("duplicate_key.toml", "`seeds` is set twice", SMALL + "seeds = 2\n")
    c("incomplete_table.toml", "`[model]` gives `hidden` but not `layers`, `heads`, `intermediate`",
      SMALL + "[model]\nhidden = 32\n")
    c("noise_out_of_range.toml", "noise rate 0.5 (must be below 0.5)",
      sigmoid + "noise = [0.0, 0.5]\nseeds = 1\n")
    c("unknown_loss.toml", "loss `dpoo` does not exist", 'losses = ["dpoo"]\nnoise = [0.0]\nseeds = 1\n')
    c("empty_losses.toml", "`losses` is empty", "losses = []\nnoise = [0.0]\nseeds = 1\n")
    c("zero_seeds.toml", "`seeds` is 0", sigmoid + "noise = [0.0]\nseeds = 0\n")
    c("zero_lr.toml", "`sft.lr` is 0", SMALL + "[sft]\nexamples = 64\nsteps = 1\nbatch = 8\nlr = 0.0\n")
    c("nan_lr.toml", "`preference.lr` is nan", SMALL + preference(lr="nan"))
    c("zero_batch.toml", "`preference.batch` is 0", SMALL + preference(batch=0))
    c("negative_beta.toml", "`preference.beta` is -0.1", SMALL + preference(beta=-0.1))
    c("epsilon_too_large.toml", "`preference.epsilon` is 0.7 with `cdpo` (needs at most 0.5)",
      'losses = ["cdpo"]\nnoise = [0.0]\nseeds = 1\n' + preference(epsilon=0.7))
    c("zero_heads.toml", "`model.heads` is 0", SMALL + model(heads=0))
    c("odd_head_dim.toml", "`model.hidden` 36 over 4 heads: an odd head width of 9 (RoPE needs it even)",
      SMALL + model(hidden=36))
    c("zero_hidden.toml", "`model.hidden` is 0", SMALL + model(hidden=0))
    c("zero_intermediate.toml", "`model.intermediate` is 0", SMALL + model(intermediate=0))
    c("task_zero_symbols.toml", "`task.symbols` is 0: no symbol to draw", SMALL + task(symbols=0))
    c("task_one_symbol.toml", f"`task.symbols` is 1: every response is right, {no_tie}",
      SMALL + task(symbols=1))
    c("task_zero_length.toml", f"`task.length` is 0: every response is empty, {no_tie}",
      SMALL + task(length=0))
    c("task_quality_above_one.toml", "`task.sft_quality` is 1.5, not a probability",
      SMALL + task(quality=1.5))
    c("task_quality_one.toml", f"`task.sft_quality` is 1: every SFT response is right, {no_tie}",
      SMALL + task(quality=1.0))
    c("not_utf8.toml", "line 1 holds a byte that is not UTF-8", b'losses = ["sigm\xf6id"]\n')
    c("dataset_heldout_one.toml", "`[dataset]` config with `heldout = 1.0`: nothing left to train on",
      DATASET.replace("heldout = 0.2", "heldout = 1.0"))
    c("dataset_bad_template.toml", "`[dataset]` config with template `alpaca`, which ropo does not have",
      DATASET.replace('template = "hh"', 'template = "alpaca"'))
    c("dataset_missing_pairs.toml", "`[dataset]` config whose `pairs` file does not exist",
      DATASET.replace("helpful-base-test.jsonl.gz", "no-such-file.jsonl"))
    c("dataset_unknown_field.toml", "`[dataset]` has a field `shuffle`",
      DATASET.replace("split_seed = 0", "split_seed = 0\nshuffle = true"))
    c("dataset_missing_field.toml", "`[dataset]` has no `tokenizer`",
      DATASET.replace('tokenizer = "../../../../shared/assets/models/tok512.bin"\n', ""))
    c("dataset_gold_noise.toml", "`[dataset]` config with `noise_model = \"bradley_terry\"`, which needs a known reward",
      DATASET.replace("seeds = 1\n", 'seeds = 1\nnoise_model = "bradley_terry"\n'))


# --------------------------------------------------------------------------------------------
# tokenizers, opened by `xtask score --model <tiny llama> --tokenizer PATH`

WORDLEVEL = {
    "version": "1.0",
    "truncation": None,
    "padding": None,
    "added_tokens": [],
    "normalizer": None,
    "pre_tokenizer": {"type": "Whitespace"},
    "post_processor": None,
    "decoder": None,
    "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "hi": 1, "there": 2}, "unk_token": "[UNK]"},
}


def hf(**over):
    value = json.loads(json.dumps(WORDLEVEL))
    value.update(over)
    return json.dumps(value, indent=1) + "\n"


def llama2c_tokenizer(pieces):
    """llama2.c's tokenizer.bin: i32 max token length, then per token f32 score (0 here),
    i32 length, bytes."""
    out = struct.pack("<i", max(len(p) for p in pieces))
    for piece in pieces:
        out += struct.pack("<fi", 0.0, len(piece)) + piece
    return out


def llama2c_pieces(extra=()):
    """<unk>, BOS, EOS, the 256 byte tokens, then `extra`."""
    return [b"<unk>", b"\n<s>\n", b"\n</s>\n"] + [b"<0x%02X>" % b for b in range(256)] + list(extra)


def tokenizers():
    def t(name, description, content):
        write(case("tokenizers/" + name, description), content)

    t("hf_empty.json", "a `tokenizer.json` of zero bytes", "")
    t("hf_not_json.json", "not JSON at all", "tokenizer: word-level\n")
    t("hf_truncated.json", "JSON cut off mid-file", hf()[:120])
    t("hf_array.json", "a JSON array, not a tokenizer object", "[1, 2, 3]\n")
    # The three below made the tokenizers library panic (found by fuzzing, `fuzz/regressions/`).
    t("hf_decoder_cut.json", "the `decoder` object breaks off mid-key (`{\"ty` then `}`)",
      hf()[: hf().index('"decoder"')] + '"decoder": {"ty}}\n')
    t("hf_bpe_merge_longer_than_vocab.json",
      "BPE merge `h e` whose result `he` is longer than every vocabulary token (the library panicked slicing it)",
      hf(model={"type": "BPE", "vocab": {"h": 0, "e": 1}, "merges": ["h e"]}))
    t("hf_decoder_lone_surrogate.json", "the `decoder` type is `\\ud800`, a lone surrogate escape",
      hf()[: hf().index('"decoder"')] + '"decoder": {"type": "\\ud800"}, "model": {"type": "BPE", "vocab": {}, "merges": []}}\n')
    without_model = json.loads(hf())
    del without_model["model"]
    t("hf_no_model.json", "no `model` field", json.dumps(without_model, indent=1) + "\n")
    t("hf_unknown_model.json", "model type `WordPieceX` does not exist",
      hf(model={"type": "WordPieceX", "vocab": {}}))
    t(
        "hf_vocab_string_id.json",
        "a vocabulary id is a string",
        hf(model={"type": "WordLevel", "vocab": {"[UNK]": "zero"}, "unk_token": "[UNK]"}),
    )
    t(
        "hf_bpe_merge_unknown.json",
        "a BPE merge names a token (`q`) the vocabulary lacks",
        hf(model={"type": "BPE", "vocab": {"h": 0, "i": 1, "hi": 2}, "merges": ["h i", "q i"]}),
    )
    t(
        "hf_bad_regex.json",
        "a `Split` pre-tokenizer whose regex does not compile (`(unclosed`)",
        hf(pre_tokenizer={"type": "Split", "pattern": {"Regex": "(unclosed"},
                          "behavior": "Isolated", "invert": False}),
    )
    t(
        "hf_unknown_normalizer.json",
        "normalizer type `Lowercase2` does not exist",
        hf(normalizer={"type": "Lowercase2"}),
    )
    t(
        "hf_no_unk.json",
        "a WordLevel vocabulary without `hi` and without an unknown token: the prompt cannot be encoded",
        hf(model={"type": "WordLevel", "vocab": {"a": 0, "b": 1}, "unk_token": "[UNK]"}),
    )
    t("hf_bad_config/tokenizer.json", "(valid; see tokenizer_config.json)", hf())
    t(
        "hf_bad_config/tokenizer_config.json",
        "`bos_token` is a number",
        json.dumps({"bos_token": 5, "eos_token": "there"}) + "\n",
    )
    t("hf_config_unknown_token/tokenizer.json", "(valid; see tokenizer_config.json)", hf())
    t(
        "hf_config_unknown_token/tokenizer_config.json",
        "`eos_token` `</s>` is not in the vocabulary",
        json.dumps({"bos_token": None, "eos_token": "</s>"}) + "\n",
    )
    t("hf_config_not_json/tokenizer.json", "(valid; see tokenizer_config.json)", hf())
    t("hf_config_not_json/tokenizer_config.json", "not JSON", "bos_token = <s>\n")

    pieces = llama2c_pieces([b" ", b"h", b"i", b"hi"])
    valid = llama2c_tokenizer(pieces)
    t("l2c_empty.bin", "a llama2.c tokenizer of zero bytes", b"")
    t("l2c_short_header.bin", "2 bytes: shorter than the 4-byte `max_token_length`", b"\x07\x00")
    t("l2c_negative_max_len.bin", "`max_token_length` is -1", struct.pack("<i", -1) + valid[4:])
    t("l2c_truncated_score.bin", "ends 2 bytes into a token's score", valid[:4 + 8 + 5 + 2])
    t(
        "l2c_negative_token_len.bin",
        "token 1's byte length is -5",
        valid[:4 + 8 + 5] + struct.pack("<fi", 0.0, -5) + valid[4 + 8 + 5 + 8:],
    )
    t(
        "l2c_token_past_end.bin",
        "the last token's byte length (1000) runs past the end of the file",
        llama2c_tokenizer(pieces[:-1]) + struct.pack("<fi", 0.0, 1000) + b"hi",
    )
    t(
        "l2c_huge_token_len.bin",
        "token 0's byte length is 2^31 - 1",
        struct.pack("<i", 5) + struct.pack("<fi", 0.0, 2**31 - 1) + b"<unk>",
    )
    t("l2c_no_byte_tokens.bin", "only `<unk>`, BOS and EOS: the 256 byte tokens are missing",
      llama2c_tokenizer(pieces[:3]))
    wrong = list(pieces)
    wrong[100] = b"<0xZZ>"
    t("l2c_wrong_byte_token.bin", "token 100 is `<0xZZ>` where the byte token `<0x61>` must be",
      llama2c_tokenizer(wrong))
    t(
        "l2c_model_file.bin",
        "a llama2.c model checkpoint (header and weights) given as the tokenizer",
        struct.pack("<7i", 8, 16, 1, 2, 2, 32, 16) + struct.pack("<64f", *([0.5] * 64)),
    )
    t(
        "l2c_too_many_tokens.bin",
        "a well-formed tokenizer of 300 tokens, for a model of 96",
        llama2c_tokenizer(llama2c_pieces([b"t%d" % i for i in range(41)])),
    )

    encoder = json.dumps({"h": 0, "i": 1, "hi": 2, "<|endoftext|>": 3}) + "\n"
    t("gpt2_no_merges/encoder.json", "`encoder.json` without the `vocab.bpe` it needs beside it",
      encoder)
    t("gpt2_encoder_not_json/encoder.json", "`encoder.json` is not JSON", "{h: 0}\n")
    t("gpt2_encoder_not_json/vocab.bpe", "(valid)", "#version: 0.2\nh i\n")
    t("gpt2_negative_id/encoder.json", "`encoder.json` maps `h` to -1", '{"h": -1, "i": 1, "hi": 2}\n')
    t("gpt2_negative_id/vocab.bpe", "(valid)", "#version: 0.2\nh i\n")
    t("gpt2_three_tokens/encoder.json", "(valid)", encoder)
    t("gpt2_three_tokens/vocab.bpe", "line 3 holds three tokens", "#version: 0.2\nh i\nh i hi\n")
    t("gpt2_unknown_merge/encoder.json", "(valid)", encoder)
    t("gpt2_unknown_merge/vocab.bpe", "line 2 merges `h` and `q`, and `q` is not in `encoder.json`",
      "#version: 0.2\nh q\n")
    t("gpt2_merges_not_utf8/encoder.json", "(valid)", encoder)
    t("gpt2_merges_not_utf8/vocab.bpe", "not UTF-8 (a Latin-1 byte)", b"#version: 0.2\nh \xe9\n")

    t("unknown_kind.model", "a SentencePiece `.model` file, a kind ropo does not read",
      b"\x0a\x0b\x0a\x05<unk>")
    t("no_tokenizer/config.json", "a folder with no tokenizer file in it (only `config.json`)", "{}\n")
    t("two_tok_bins/tok512.bin", "a folder with two `tok*.bin` and nothing saying which to use",
      b"\0" * 8)
    t("two_tok_bins/tok1024.bin", "(the second candidate)", b"\0" * 8)


# --------------------------------------------------------------------------------------------
# checkpoints, opened by `xtask score --model PATH --tokenizer tok512.bin`

TINY_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 8,
    "hidden_size": 4,
    "intermediate_size": 4,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "max_position_embeddings": 16,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": False,
    "torch_dtype": "float32",
}


def tiny_tensors():
    """The tensors of the tiny checkpoint (names, shapes), in file order."""
    config = TINY_CONFIG
    v, h, m = config["vocab_size"], config["hidden_size"], config["intermediate_size"]
    shapes = [("model.embed_tokens.weight", [v, h])]
    for layer in range(config["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        shapes += [
            (p + "input_layernorm.weight", [h]),
            (p + "self_attn.q_proj.weight", [h, h]),
            (p + "self_attn.k_proj.weight", [h, h]),
            (p + "self_attn.v_proj.weight", [h, h]),
            (p + "self_attn.o_proj.weight", [h, h]),
            (p + "post_attention_layernorm.weight", [h]),
            (p + "mlp.gate_proj.weight", [m, h]),
            (p + "mlp.up_proj.weight", [m, h]),
            (p + "mlp.down_proj.weight", [h, m]),
        ]
    shapes += [("model.norm.weight", [h]), ("lm_head.weight", [v, h])]
    return shapes


def safetensors(tensors):
    """A safetensors file of F32 tensors: u64 header length, JSON header (padded to 8 bytes),
    data (small deterministic floats)."""
    header, data = {}, b""
    for name, shape in tensors:
        count = 1
        for n in shape:
            count *= n
        values = struct.pack(f"<{count}f", *((i % 7) * 0.01 for i in range(count)))
        offsets = [len(data), len(data) + len(values)]
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": offsets}
        data += values
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def checkpoints():
    good = safetensors(tiny_tensors())

    def folder(name, description, config=TINY_CONFIG, weights=good, files=None):
        """A checkpoint folder: `config` (a dict, or text as it is; None: no file), `weights`
        as `model.safetensors` (None: no file) and any other `files`."""
        base = case("checkpoints/" + name, description)
        if config is not None:
            text = config if isinstance(config, str) else json.dumps(config, indent=1) + "\n"
            write(os.path.join(base, "config.json"), text)
        if weights is not None:
            write(os.path.join(base, "model.safetensors"), weights)
        for file, content in (files or {}).items():
            write(os.path.join(base, file), content)

    def broken_config(name, description, **over):
        """The tiny checkpoint with `over` in its `config.json` (a value of None: left out)."""
        edited = {k: v for k, v in {**TINY_CONFIG, **over}.items() if v is not None}
        folder(name, description, config=edited)

    folder("no_config", "a folder with `model.safetensors` but no `config.json`", config=None)
    folder("config_empty", "`config.json` is zero bytes", config="")
    folder("config_not_json", "`config.json` is not JSON", config="model_type: llama\n")
    broken_config("config_no_model_type", "`config.json` has no `model_type`", model_type=None)
    broken_config("config_unknown_model_type", "`model_type` is `bert`", model_type="bert")
    broken_config("config_missing_hidden_size", "`config.json` has no `hidden_size`", hidden_size=None)
    broken_config("config_hidden_size_string", "`hidden_size` is a string", hidden_size="4")
    broken_config("config_negative_layers", "`num_hidden_layers` is -1", num_hidden_layers=-1)
    broken_config("config_zero_heads", "`num_attention_heads` is 0", num_attention_heads=0)
    broken_config("config_kv_heads_do_not_divide",
                  "`num_attention_heads` 2 is not a multiple of `num_key_value_heads` 3",
                  num_key_value_heads=3)
    broken_config("config_odd_head_dim", "`head_dim` is 3 (RoPE needs it even)", head_dim=3)
    broken_config("config_zero_hidden_size", "`hidden_size` is 0", hidden_size=0)
    broken_config("config_zero_vocab", "`vocab_size` is 0", vocab_size=0)
    broken_config("config_zero_context", "`max_position_embeddings` is 0", max_position_embeddings=0)
    broken_config("config_llama3_rope_incomplete",
                  "`rope_parameters` asks for llama3 scaling without its `factor`",
                  rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0})
    broken_config("config_shapes_disagree", "`intermediate_size` 6 where the weights have 4",
                  intermediate_size=6)
    broken_config("config_more_layers", "`num_hidden_layers` 2 where the weights have 1",
                  num_hidden_layers=2)
    folder("no_weights", "`config.json` but no `model.safetensors`", weights=None)
    folder("weights_empty", "`model.safetensors` is zero bytes", weights=b"")
    folder("weights_short", "`model.safetensors` is 5 bytes, shorter than its header length field",
           weights=good[:5])
    folder("weights_header_too_long", "the header length field says 2^64 - 1 bytes",
           weights=struct.pack("<Q", 2**64 - 1) + good[8:])
    folder(
        "weights_header_past_end",
        "the header length field points past the end of the file",
        weights=struct.pack("<Q", len(good)) + good[8:],
    )
    broken = bytearray(good)
    broken[8:24] = b"#not a json hdr#"
    folder("weights_header_not_json", "the header is not JSON", weights=bytes(broken))
    folder("weights_truncated", "`model.safetensors` cut in the middle of its data", weights=good[:-100])
    folder(
        "weights_offsets_wrong",
        "`model.norm.weight`'s shape [16] needs 64 bytes; its `data_offsets` give 16",
        weights=patch_header(good, "model.norm.weight", lambda e: {**e, "shape": [16]}),
    )
    folder(
        "weights_unknown_dtype",
        "a tensor's dtype is `F31`, which does not exist",
        weights=patch_header(good, "model.norm.weight", lambda e: {**e, "dtype": "F31"}),
    )
    folder(
        "weights_missing_tensor",
        "`lm_head.weight` is missing",
        weights=safetensors([t for t in tiny_tensors() if t[0] != "lm_head.weight"]),
    )
    folder(
        "weights_extra_tensor",
        "an extra tensor `model.layers.0.self_attn.extra.weight`",
        weights=safetensors(tiny_tensors() + [("model.layers.0.self_attn.extra.weight", [4])]),
    )
    folder(
        "weights_wrong_shape",
        "`model.norm.weight` has shape [3] instead of [4]",
        weights=safetensors([(n, [3] if n == "model.norm.weight" else s) for n, s in tiny_tensors()]),
    )
    folder(
        "index_not_json",
        "`model.safetensors.index.json` is not JSON",
        weights=None,
        files={"model.safetensors.index.json": "weight_map: model.safetensors\n"},
    )
    folder(
        "index_missing_shard",
        "the shard index lists `model-00002-of-00002.safetensors`, which is not there",
        weights=None,
        files={
            "model.safetensors.index.json": json.dumps(
                {"metadata": {}, "weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors"}}
            )
            + "\n"
        },
    )

    # Sealed checkpoints (`SHA256SUMS`, as `ropo` writes them): a bit flipped in tensor data
    # still parses and fits every shape; only the checksum catches it.
    def sealed(name, description, weights, sums_weights):
        config = json.dumps(TINY_CONFIG, indent=1) + "\n"
        sums = "".join(
            f"{hashlib.sha256(content).hexdigest()}  {file}\n"
            for file, content in [("config.json", config.encode()), ("model.safetensors", sums_weights)]
        )
        folder(name, description, config=config, weights=weights, files={"SHA256SUMS": sums})

    flipped = bytearray(good)
    flipped[-2] ^= 0x01
    sealed("sealed_bit_flipped", "one bit flipped in the last tensor's data; `SHA256SUMS` has the sum of the original",
           weights=bytes(flipped), sums_weights=good)
    sealed("sealed_truncated", "`model.safetensors` cut short after it was sealed; `SHA256SUMS` has the sum of the original",
           weights=good[:-100], sums_weights=good)

    # llama2.c checkpoints: 7 i32 (dim hidden_dim n_layers n_heads n_kv_heads vocab_size
    # seq_len), then f32 weights.
    def l2c(name, description, content):
        write(case("checkpoints/" + name, description), content)

    header = (4, 4, 1, 2, 2, 8, 16)
    l2c("l2c_empty.bin", "a llama2.c checkpoint of zero bytes", b"")
    l2c("l2c_short_header.bin", "12 bytes: shorter than the 28-byte header",
        struct.pack("<3i", *header[:3]))
    l2c("l2c_negative_dim.bin", "header `dim` is -4", struct.pack("<7i", -4, *header[1:]))
    l2c("l2c_zero_layers.bin", "header `n_layers` is 0", struct.pack("<7i", 4, 4, 0, 2, 2, 8, 16))
    l2c("l2c_heads_do_not_divide.bin", "header `dim` 4 over `n_heads` 3",
        struct.pack("<7i", 4, 4, 1, 3, 3, 8, 16))
    l2c("l2c_odd_head_dim.bin", "header `dim` 6 over 2 heads: an odd head width of 3",
        struct.pack("<7i", 6, 4, 1, 2, 2, 8, 16))
    l2c(
        "l2c_truncated.bin",
        "a valid header whose weights stop after the token embedding",
        struct.pack("<7i", *header) + struct.pack("<32f", *([0.1] * 32)),
    )
    l2c(
        "l2c_huge_dims.bin",
        "header `dim` 2^30 and `vocab_size` 2^31 - 1: a token embedding of 2^61 floats in a "
        "28-byte file",
        struct.pack("<7i", 2**30, 4, 1, 2, 2, 2**31 - 1, 16),
    )


def patch_header(file, name, edit):
    """`file` with `edit` applied to the header entry of tensor `name`."""
    return patch(file, lambda header: {**header, name: edit(header[name])})


def patch(file, edit):
    (length,) = struct.unpack("<Q", file[:8])
    header = edit(json.loads(file[8 : 8 + length]))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + file[8 + length :]


# --------------------------------------------------------------------------------------------

README_HEAD = """\
# The bad-input corpus

Small malformed files, each broken in one way, that ropo must refuse with a one-line
`error: …` naming the file (and the line or field where there is one), a non-zero exit and no
panic. `xtask/tests/bad_inputs.rs` runs every one through the command line:

| folder | command |
|---|---|
| `data/` | `cargo xtask data inspect FILE` |
| `configs/` | `cargo xtask train --quiet --config FILE --out TMP` |
| `tokenizers/` | `cargo xtask score --model crates/ropo-models/tests/fixtures/llama --tokenizer PATH --prompt hi --response there` |
| `checkpoints/` | `cargo xtask score --model PATH --tokenizer ../shared/assets/models/tok512.bin --prompt hi --response there` |

Every file here is written by `make_bad_inputs.py` (python3, standard library only; run it from
the repository root); change a case there, run it, and commit what it writes, this file
included. A folder is one case when the command is given the folder (a checkpoint, a
tokenizer folder); its files are listed under it. The checkpoint folders hold a tiny Llama
(`TINY_CONFIG` in the script: 1 layer, width 4, vocabulary 8), which loads and scores when
unbroken, broken in one way each.

"""


def readme():
    out = [README_HEAD]
    for folder in FOLDERS:
        out.append(f"## {folder}/\n\n| case | what is wrong |\n|---|---|\n")
        for path, description in CASES:
            if path.startswith(folder + "/"):
                out.append(f"| `{path[len(folder) + 1:]}` | {description} |\n")
        out.append("\n")
    write(os.path.join(HERE, "README.md"), "".join(out).rstrip("\n") + "\n")


def main():
    for folder in FOLDERS:
        shutil.rmtree(os.path.join(HERE, folder), ignore_errors=True)
    data()
    configs()
    tokenizers()
    checkpoints()
    readme()
    total = sum(
        os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(HERE) for f in files
    )
    print(f"{len(CASES)} files and folders described, {total} bytes in {HERE}")


if __name__ == "__main__":
    main()
