#!/usr/bin/env python3
"""Build the chat prompts of examples/chat_distill.kd from the chatterbot corpus.

Source: PyPI ``chatterbot-corpus==1.3.3`` (BSD-3-Clause), the YAML files
``chatterbot_corpus/data/<language>/*.yml``, each a ``conversations:`` list of
alternating turns. Fetch and unpack it with

    python3 -m pip download --no-deps -d /tmp/cc chatterbot-corpus==1.3.3
    cd /tmp/cc && unzip -q chatterbot_corpus-1.3.3-py2.py3-none-any.whl

then, from the repository root,

    python3 examples/data/make_chat.py /tmp/cc/chatterbot_corpus/data

Writes (UTF-8, one JSON object a line, "\\n" line ends; same input, same bytes):

- chat_prompts.jsonl  {"prompt": ...}: 48 English chat openers the teacher answers, the
                      training set: the first turns of english/botprofile, greetings,
                      conversations, ai, emotion, psychology and food, whitespace
                      collapsed, deduplicated (case-insensitively), in that order
- chat_test.jsonl     {"prompt": ...}: 16 more, none in the training set (every fourth
                      opener of the pool is held out)
- chat_bn.jsonl       {"messages": [user, assistant]}: the first 12 two-turn Bengali
                      conversations of bengali/botprofile.yml and computer.yml, with the
                      corpus's own answer as the reference

Needs PyYAML (``pip install pyyaml``).
"""

import json
import os
import sys

import yaml


def conversations(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)["conversations"]


def openers(root, name):
    out = []
    for turns in conversations(os.path.join(root, "english", name)):
        if len(turns) >= 2 and isinstance(turns[0], str) and turns[0].strip():
            out.append(" ".join(turns[0].split()))
    return out


def write(path, rows):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main():
    root = sys.argv[1]
    here = os.path.dirname(os.path.abspath(__file__))
    pool, seen = [], set()
    for name in ["botprofile.yml", "greetings.yml", "conversations.yml", "ai.yml", "emotion.yml", "psychology.yml", "food.yml"]:
        for q in openers(root, name):
            if q.lower() not in seen:
                seen.add(q.lower())
                pool.append(q)
    # Interleave so both sets mix topics: every fourth question is held out.
    test = pool[3::4][:16]
    train = [q for q in pool if q not in test][:48]
    write(os.path.join(here, "chat_prompts.jsonl"), [{"prompt": q} for q in train])
    write(os.path.join(here, "chat_test.jsonl"), [{"prompt": q} for q in test])
    bn = []
    for name in ["botprofile.yml", "computer.yml"]:
        for turns in conversations(os.path.join(root, "bengali", name)):
            if len(turns) >= 2 and all(isinstance(t, str) for t in turns[:2]):
                user, answer = (" ".join(t.split()) for t in turns[:2])
                bn.append({"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]})
    write(os.path.join(here, "chat_bn.jsonl"), bn[:12])
    print(f"{len(pool)} openers: {len(train)} training prompts, {len(test)} test prompts, {len(bn[:12])} Bengali conversations")


if __name__ == "__main__":
    main()
