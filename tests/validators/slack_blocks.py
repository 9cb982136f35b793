"""Validates Slack messages with Slack's own Python SDK (slack_sdk's Block Kit models).

Usage: python3 slack_blocks.py MESSAGES.json   (a JSON array of {"text": ..., "blocks": [...]})

Each block is parsed with slack_sdk.models.blocks.Block.parse and validated with its
validate_json() (section text 3,000, header 150, fields 10, button value 2,000, ids 255,
...). Slack's documented limits the SDK does not check are checked here too: 50 blocks a
message, 2,000 characters a section field. Exits 1 if any message breaks a limit.
"""
import json
import sys

from slack_sdk.models.blocks import Block

messages = json.load(open(sys.argv[1]))
bad = 0
for i, m in enumerate(messages):
    problems = []
    blocks = m["blocks"]
    if len(blocks) > 50:
        problems.append(f"{len(blocks)} blocks (the most is 50)")
    for b in blocks:
        try:
            parsed = Block.parse(b)
            if parsed is None:
                problems.append(f"unknown block {b.get('type')}")
                continue
            parsed.validate_json()
        except Exception as e:  # SlackObjectFormationError, or a malformed block
            problems.append(f"{b.get('type')}: {e}")
        for f in b.get("fields", []):
            if len(f.get("text", "")) > 2000:
                problems.append(f"a field of {len(f['text'])} characters (the most is 2,000)")
        for el in b.get("elements", []):
            if el.get("type") == "button" and len(el.get("value", "")) > 2000:
                problems.append("a button value over 2,000 characters")
    if len(m.get("text", "")) > 40000:
        problems.append("message text over 40,000 characters")
    if problems:
        bad += 1
        print(f"message {i}: " + "; ".join(problems))
    else:
        size = sum(len(json.dumps(b)) for b in blocks)
        print(f"message {i}: ok ({len(blocks)} blocks, {size} bytes)")
sys.exit(1 if bad else 0)
