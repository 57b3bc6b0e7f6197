#!/usr/bin/env python3
"""Write N distinct English sentences from a small grammar of our own (cased, punctuated).

    local/generate_sentences.py N [--seed 0] [--exclude local/mini_sentences.txt] > extra.txt

The hand-written local/mini_sentences.txt gives the mini corpus natural sentences, but only a
few hundred: too few for a model to learn how letters sound on sentences it has not seen
(see the recipe README, "What the mini model learns"). These sentences add training text
cheaply: a few hundred common words recombined into statements, questions and clauses, so
that every word is heard many times in many contexts. The same seed gives the same list.
"""

import argparse
import random
import sys

SUBJECTS = [
    "the old fisherman", "my younger sister", "a tall stranger", "our neighbour", "the little girl",
    "her uncle", "the school teacher", "a tired farmer", "the baker", "his best friend",
    "the young doctor", "grandfather", "the quiet boy", "two sailors", "the captain",
    "a busy waiter", "the gardener", "my cousin", "the new nurse", "an elderly woman",
    "the postman", "a clever student", "the shopkeeper", "their mother", "the driver",
    "a nervous actor", "the village priest", "my father", "the twins", "a friendly policeman",
]
# (past tense, base form, rest of the predicate)
PREDICATES = [
    ("carried", "carry", "a heavy basket"), ("painted", "paint", "the garden fence"),
    ("found", "find", "a silver key"), ("lost", "lose", "the red umbrella"),
    ("bought", "buy", "fresh bread and cheese"), ("fixed", "fix", "the broken clock"),
    ("cooked", "cook", "a large dinner"), ("read", "read", "an old letter"),
    ("opened", "open", "the wooden box"), ("cleaned", "clean", "the kitchen floor"),
    ("watched", "watch", "the evening news"), ("sold", "sell", "three green apples"),
    ("wrote", "write", "a short poem"), ("dropped", "drop", "a glass of milk"),
    ("borrowed", "borrow", "my bicycle"), ("planted", "plant", "seven tomato seeds"),
    ("washed", "wash", "the muddy dog"), ("counted", "count", "the gold coins"),
    ("mended", "mend", "a torn blanket"), ("climbed", "climb", "the steep hill"),
    ("visited", "visit", "the city museum"), ("forgot", "forget", "the bag of oranges"),
    ("heard", "hear", "a strange noise"), ("caught", "catch", "a large silver fish"),
    ("packed", "pack", "two warm coats"), ("fed", "feed", "the hungry ducks"),
    ("locked", "lock", "the back door"), ("sang", "sing", "a cheerful song"),
    ("built", "build", "a small shed"), ("answered", "answer", "the telephone"),
    ("hid", "hide", "the birthday present"), ("moved", "move", "the piano"),
    ("followed", "follow", "the narrow path"), ("paid", "pay", "the electricity bill"),
    ("chose", "choose", "a blue jacket"), ("met", "meet", "an old friend"),
]
PLACES = [
    "in the market", "near the river", "at the station", "behind the church", "under the bridge",
    "on the hill", "by the harbour", "inside the barn", "across the street", "at the library",
    "in the garden", "outside the bakery", "on the train", "in the kitchen", "beside the lake",
    "at the top of the stairs", "in the village square", "near the old mill", "at the bus stop",
    "in the front room",
]
TIMES = [
    "this morning", "last winter", "after lunch", "before dawn", "on Sunday", "every Friday",
    "yesterday evening", "at midnight", "during the storm", "in the spring", "last week",
    "on Tuesday afternoon", "after the concert", "before breakfast", "at half past nine",
    "in the summer holidays", "on a cold Monday", "three days ago",
]
ENDINGS = [
    "and then went home", "but nobody noticed", "and laughed about it", "while the kettle boiled",
    "because it was raining", "although it was late", "and felt much better", "before anyone else arrived",
]


def cap(s: str) -> str:
    return s[0].upper() + s[1:]


def sentence(rng: random.Random) -> str:
    subj = rng.choice(SUBJECTS)
    past, base, rest = rng.choice(PREDICATES)
    place, time = rng.choice(PLACES), rng.choice(TIMES)
    form = rng.randrange(6)
    if form == 0:
        return f"{cap(subj)} {past} {rest} {place} {time}."
    if form == 1:
        return f"{cap(time)}, {subj} {past} {rest} {place}."
    if form == 2:
        return f"Did {subj} {base} {rest} {place} {time}?"
    if form == 3:
        return f"{cap(subj)} {past} {rest} {place}, {rng.choice(ENDINGS)}."
    if form == 4:
        return f"Why did {subj} {base} {rest} {time}?"
    return f"{cap(place)}, {subj} {past} {rest}."


def generate(count: int, seed: int = 0, exclude=()) -> list:
    """``count`` distinct sentences, none of them in ``exclude``; the same seed gives the same list."""
    taken = set(exclude)
    rng = random.Random(seed)
    out, tries = [], 0
    while len(out) < count:
        tries += 1
        if tries > 100 * count + 1000:
            raise ValueError(f"only {len(out)} distinct sentences after {tries} draws; "
                             f"the grammar cannot give {count}")
        s = sentence(rng)
        if s not in taken:
            taken.add(s)
            out.append(s)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("count", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--exclude", default=None, help="file of sentences never to emit (one per line)")
    args = parser.parse_args()
    exclude = []
    if args.exclude:
        exclude = [line.strip() for line in open(args.exclude, encoding="utf-8") if line.strip()]
    try:
        out = generate(args.count, args.seed, exclude)
    except ValueError as e:
        sys.exit(f"generate_sentences: {e}")
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
