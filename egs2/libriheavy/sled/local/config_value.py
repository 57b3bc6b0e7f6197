#!/usr/bin/env python3
"""Print a value from a YAML config by dotted path, or a default.

    config_value.py conf/train.yaml tts_conf.max_positions 2048
"""

import sys

import yaml


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: config_value.py CONFIG DOTTED.KEY DEFAULT")
    path, key, default = sys.argv[1:]
    with open(path, encoding="utf-8") as f:
        node = yaml.safe_load(f) or {}
    for part in key.split("."):
        if not isinstance(node, dict) or node.get(part) is None:
            print(default)
            return
        node = node[part]
    print(node)


if __name__ == "__main__":
    main()
