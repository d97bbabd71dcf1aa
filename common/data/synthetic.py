"""A deterministic synthetic English corpus and the minimal pairs that test what it teaches.

Training a tiny language model should not need a download, so this module is the offline
default dataset: documents in an English-like language drawn from a small probabilistic
grammar over a real English lexicon. The grammar is small enough for a model of a few million
parameters to learn, yet it has the dependencies that BLiMP-style evaluation probes:

* subject-verb agreement with the head noun, across prepositional-phrase and relative-clause
  attractors ("The dog near the cats runs.", "The dog that the cats see runs."),
* determiner-noun agreement ("this dog", "these dogs"),
* reflexives that agree with their subject ("The girls see themselves."),
* negative polarity items licensed only by "no" or "not" ("No dog ever runs.").

`synthetic_minimal_pairs` draws pairs of a grammatical sentence and a one-word corruption of it
in BLiMP's JSONL format. Every good sentence is one the grammar can generate; no bad sentence is,
so a model that has learned the corpus's grammar should prefer the good sentence of each pair.

Corpus conventions: lower-case words separated by single spaces, the first word of a sentence
capitalised, a period attached to the last word ("The dogs near the cat run."), sentences of a
document joined with single spaces. Everything is drawn from `random.Random` instances seeded
from the caller's seed, so the same seed gives byte-identical text on every machine.
"""

import random
from collections.abc import Callable, Iterator
from functools import partial
from typing import NamedTuple

# Bump whenever a change alters generated text: it is part of the corpus cache fingerprint.
SYNTHETIC_VERSION = "1"
# Words generated when a run names no size (the default run takes a few minutes on a laptop CPU).
DEFAULT_WORDS = 600_000

SINGULAR, PLURAL = 0, 1
MIN_SENTENCES_PER_DOCUMENT, MAX_SENTENCES_PER_DOCUMENT = 3, 12

# --- Lexicon -------------------------------------------------------------------------------

_COMMON_ADJECTIVES = "big small old wet dry clean dirty heavy".split()
_LIVING_ADJECTIVES = "happy sad hungry tired angry clever brave lazy friendly young sleepy busy kind proud".split()
_DULL_COLOURS = "brown black white grey".split()
_THING_ADJECTIVES = "red blue green yellow new broken".split()


class _Noun(NamedTuple):
    forms: tuple[str, str]  # indexed by SINGULAR / PLURAL
    reflexives: tuple[str, str]  # the reflexive that agrees with each form
    animate: bool  # only animate nouns are subjects of verbs or objects of social verbs
    adjectives: tuple[str, ...]  # the adjectives that make sense for this noun


def _nouns(pairs: str, singular_reflexive: str, animate: bool, adjectives: list[str]) -> list[_Noun]:
    return [
        _Noun(tuple(pair.split("/")), (singular_reflexive, "themselves"), animate, tuple(adjectives))
        for pair in pairs.split()
    ]


# People carry a grammatical gender so that "himself"/"herself" are determined by the noun;
# "child" and "baby" take "itself", as in "the baby hurt itself".
_NOUNS = (
    _nouns(
        "man/men boy/boys king/kings father/fathers brother/brothers uncle/uncles son/sons prince/princes",
        "himself",
        True,
        _COMMON_ADJECTIVES + _LIVING_ADJECTIVES,
    )
    + _nouns(
        "woman/women girl/girls queen/queens mother/mothers sister/sisters aunt/aunts"
        " daughter/daughters princess/princesses",
        "herself",
        True,
        _COMMON_ADJECTIVES + _LIVING_ADJECTIVES,
    )
    + _nouns("child/children baby/babies", "itself", True, _COMMON_ADJECTIVES + _LIVING_ADJECTIVES)
    + _nouns(
        "dog/dogs cat/cats bird/birds horse/horses cow/cows pig/pigs mouse/mice goose/geese fox/foxes"
        " wolf/wolves rabbit/rabbits duck/ducks frog/frogs owl/owls elephant/elephants lion/lions"
        " tiger/tigers bear/bears monkey/monkeys",
        "itself",
        True,
        _COMMON_ADJECTIVES + _LIVING_ADJECTIVES + _DULL_COLOURS,
    )
    + _nouns(
        "key/keys box/boxes book/books ball/balls table/tables chair/chairs cabinet/cabinets door/doors"
        " window/windows house/houses tree/trees car/cars cup/cups bottle/bottles shoe/shoes hat/hats"
        " bag/bags bed/beds lamp/lamps rock/rocks bench/benches bridge/bridges apple/apples egg/eggs"
        " knife/knives toy/toys picture/pictures clock/clocks boat/boats",
        "itself",
        False,
        _COMMON_ADJECTIVES + _DULL_COLOURS + _THING_ADJECTIVES,
    )
)
_ANIMATE_NOUNS = [noun for noun in _NOUNS if noun.animate]


class _Verb(NamedTuple):
    forms: tuple[str, str]  # agreeing present tense; the PLURAL form doubles as the bare form
    animate_object: bool  # "helps the boy" but not "helps the table"


def _verbs(pairs: str, animate_object: bool = False) -> list[_Verb]:
    return [_Verb(tuple(pair.split("/")), animate_object) for pair in pairs.split()]


_INTRANSITIVE_VERBS = _verbs(
    "runs/run sleeps/sleep sings/sing jumps/jump walks/walk laughs/laugh swims/swim waits/wait"
    " smiles/smile dances/dance cries/cry plays/play works/work eats/eat sits/sit hides/hide"
    " listens/listen rests/rest shouts/shout falls/fall"
)
_TRANSITIVE_VERBS = _verbs(
    "sees/see likes/like finds/find watches/watch wants/want needs/need carries/carry pushes/push"
    " pulls/pull touches/touch loves/love hates/hate notices/notice remembers/remember holds/hold"
    " chases/chase follows/follow reaches/reach"
) + _verbs(
    "helps/help meets/meet visits/visit calls/call thanks/thank greets/greet teaches/teach"
    " trusts/trust hugs/hug feeds/feed scares/scare tickles/tickle",
    animate_object=True,
)
# An inanimate head of an object relative clause ("the box that the dogs see") needs a verb
# that takes any object.
_VERBS_WITH_ANY_OBJECT = [verb for verb in _TRANSITIVE_VERBS if not verb.animate_object]

_BE = ("is", "are")
_DO = ("does", "do")
# Repeating "the" makes it the most frequent determiner, as in English.
_DETERMINERS = (
    ("the", "the", "the", "a", "a", "this", "that", "every"),
    ("the", "the", "the", "these", "those", "some", "many", "two", "three"),
)
_PREPOSITIONS = "near behind beside under above with".split()
_ADJECTIVE_RATE = 0.25

# Agreement flips one word between its singular and plural form; nouns and verbs never share
# a spelling, so a single table serves both.
_OTHER_NUMBER = {
    form: forms[1 - number]
    for forms in [
        *(noun.forms for noun in _NOUNS),
        *(verb.forms for verb in _INTRANSITIVE_VERBS + _TRANSITIVE_VERBS),
        _BE,
        _DO,
    ]
    for number, form in enumerate(forms)
}
_NOUN_BY_FORM = {form: noun for noun in _NOUNS for form in noun.forms}

# --- Grammar -------------------------------------------------------------------------------

# Choice tables: a uniform pick from a table with repeats is a weighted pick.
_PREDICATES = ("intransitive",) * 3 + ("transitive",) * 4 + ("copula",) * 2 + ("reflexive",) * 2
_MODIFIERS = ("none",) * 10 + ("pp",) * 4 + ("subject_rc",) * 3 + ("object_rc",) * 3
# "no" is the subject's determiner ("No dog runs."); "not" negates the verb ("The dog does not run.").
_LICENSORS = ("none",) * 14 + ("no",) * 3 + ("not",) * 3
# Negative polarity items appear only under a licensor, in about half of the sentences that have
# one; "is not ever" is too stilted to teach, so negated copulas take none.
_NPI_CHOICES = {("none", predicate): (None,) for predicate in set(_PREDICATES)} | {
    ("no", "intransitive"): (None, "ever"),
    ("no", "transitive"): (None, None, "ever", "any"),
    ("no", "copula"): (None, "ever"),
    ("no", "reflexive"): (None, "ever"),
    ("not", "intransitive"): (None, "ever"),
    ("not", "transitive"): (None, None, "ever", "any"),
    ("not", "copula"): (None,),
    ("not", "reflexive"): (None, "ever"),
}


class _Sentence(NamedTuple):
    words: list[str]
    head: int  # index of the subject's head noun
    verb: int  # index of the word that agrees with the head: the verb, "is"/"are" or "does"/"do"
    object: int | None  # index of the main clause's object noun or reflexive


def _pick(rng: random.Random, choices):
    return choices[int(rng.random() * len(choices))]


def _noun_phrase(rng: random.Random, noun: _Noun, number: int, determiner: str) -> list[str]:
    if rng.random() < _ADJECTIVE_RATE:
        words = [_pick(rng, noun.adjectives), noun.forms[number]]
    else:
        words = [noun.forms[number]]
    if determiner == "a" and words[0][0] in "aeiou":
        determiner = "an"
    return [determiner, *words]


def _ordinary_noun_phrase(rng: random.Random, nouns: list[_Noun], number: int) -> list[str]:
    return _noun_phrase(rng, _pick(rng, nouns), number, _pick(rng, _DETERMINERS[number]))


def _object_phrase(rng: random.Random, verb: _Verb, number: int, determiner: str | None = None) -> list[str]:
    noun = _pick(rng, _ANIMATE_NOUNS if verb.animate_object else _NOUNS)
    return _noun_phrase(rng, noun, number, determiner or _pick(rng, _DETERMINERS[number]))


def _modifier(rng: random.Random, kind: str, head: _Noun, number: int, attractor_number: int) -> list[str]:
    """The words after the subject's head noun; any noun in them is an agreement attractor."""
    if kind == "none":
        return []
    if kind == "pp":
        return [_pick(rng, _PREPOSITIONS), *_ordinary_noun_phrase(rng, _NOUNS, attractor_number)]
    if kind == "subject_rc":
        verb = _pick(rng, _TRANSITIVE_VERBS)
        return ["that", verb.forms[number], *_object_phrase(rng, verb, attractor_number)]
    # An object relative clause: the head is the object of the clause's verb.
    verb = _pick(rng, _TRANSITIVE_VERBS if head.animate else _VERBS_WITH_ANY_OBJECT)
    relative_subject = _ordinary_noun_phrase(rng, _ANIMATE_NOUNS, attractor_number)
    return ["that", *relative_subject, verb.forms[attractor_number]]


def _predicate(
    rng: random.Random, words: list[str], head: _Noun, number: int, kind: str, licensor: str, npi: str | None
) -> tuple[int, int | None]:
    """Append the main predicate to `words`; return the indices of the agreeing word and the object."""
    verb = len(words)
    if kind == "copula":
        words.append(_BE[number])
        if licensor == "not":
            words.append("not")
        if npi == "ever":
            words.append("ever")
        words.append(_pick(rng, head.adjectives))
        return verb, None
    if licensor == "not":
        words += [_DO[number], "not"]
        form = PLURAL  # the bare form after "does"/"do"
    else:
        form = number
    if npi == "ever":
        if licensor == "no":
            verb += 1  # "No dog ever runs": the adverb precedes the verb
        words.append("ever")
    if kind == "intransitive":
        words.append(_pick(rng, _INTRANSITIVE_VERBS).forms[form])
        return verb, None
    if kind == "reflexive":
        words += [_pick(rng, _TRANSITIVE_VERBS).forms[form], head.reflexives[number]]
        return verb, len(words) - 1
    transitive = _pick(rng, _TRANSITIVE_VERBS)
    words.append(transitive.forms[form])
    if npi == "any":
        words += _object_phrase(rng, transitive, PLURAL, "any")
    else:
        words += _object_phrase(rng, transitive, int(rng.random() < 0.5))
    return verb, len(words) - 1


def _clause(
    rng: random.Random,
    *,
    number: int | None = None,
    predicate: str | None = None,
    modifier: str | None = None,
    attractor_number: int | None = None,
    licensor: str | None = None,
    npi: str | None = None,
) -> _Sentence:
    """One sentence of the grammar; each choice left as None is drawn at random."""
    if number is None:
        number = int(rng.random() < 0.5)
    if predicate is None:
        predicate = _pick(rng, _PREDICATES)
    if modifier is None:
        modifier = _pick(rng, _MODIFIERS)
    if attractor_number is None:
        attractor_number = int(rng.random() < 0.5)
    if licensor is None:
        licensor = _pick(rng, _LICENSORS)
    if npi is None:
        npi = _pick(rng, _NPI_CHOICES[licensor, predicate])
    # Only "is"/"are" takes an inanimate subject, and only an animate head can do the
    # action of a subject relative clause.
    needs_animate = predicate != "copula" or modifier == "subject_rc"
    head = _pick(rng, _ANIMATE_NOUNS if needs_animate else _NOUNS)
    determiner = "no" if licensor == "no" else _pick(rng, _DETERMINERS[number])
    words = _noun_phrase(rng, head, number, determiner)
    head_index = len(words) - 1
    words += _modifier(rng, modifier, head, number, attractor_number)
    verb_index, object_index = _predicate(rng, words, head, number, predicate, licensor, npi)
    return _Sentence(words, head_index, verb_index, object_index)


def _format(words: list[str]) -> str:
    text = " ".join(words)
    return text[0].upper() + text[1:] + "."


def synthetic_documents(num_words: int, seed: int = 0) -> Iterator[str]:
    """Yield documents until at least num_words whitespace-separated words have been produced.

    Stops right after the document that crosses the budget, so the last one is never cut short.
    """
    rng = random.Random(f"babytrain-synthetic-documents:{seed}")
    produced = 0
    while produced < num_words:
        sentences = [
            _clause(rng).words for _ in range(rng.randint(MIN_SENTENCES_PER_DOCUMENT, MAX_SENTENCES_PER_DOCUMENT))
        ]
        produced += sum(map(len, sentences))
        yield " ".join(map(_format, sentences))


# --- Minimal pairs -------------------------------------------------------------------------

_NUMBER_MARKED_DETERMINERS = {"this", "that", "these", "those"}
_ADJECTIVES = set(_COMMON_ADJECTIVES + _LIVING_ADJECTIVES + _DULL_COLOURS + _THING_ADJECTIVES)
# A paradigm with fewer distinct pairs than requested fails after this many draws per pair.
_DRAWS_PER_PAIR = 100


def _with_word(words: list[str], index: int, word: str) -> list[str]:
    return [*words[:index], word, *words[index + 1 :]]


def _agreement_pair(rng: random.Random, modifier: str, licensor: str = "none") -> tuple[list[str], list[str]]:
    # The attractor always has the other number, so that agreeing with it is the wrong answer.
    number = int(rng.random() < 0.5)
    sentence = _clause(rng, number=number, modifier=modifier, attractor_number=1 - number, licensor=licensor)
    verb = sentence.words[sentence.verb]
    return sentence.words, _with_word(sentence.words, sentence.verb, _OTHER_NUMBER[verb])


def _determiner_noun_pair(rng: random.Random, with_adjective: bool) -> tuple[list[str], list[str]]:
    # Rejection sampling keeps the good sentence an ordinary draw of the grammar.
    while True:
        sentence = _clause(rng, predicate="transitive", modifier="none", licensor="none")
        words, noun = sentence.words, sentence.object
        has_adjective = words[noun - 1] in _ADJECTIVES
        if has_adjective == with_adjective and words[noun - 1 - has_adjective] in _NUMBER_MARKED_DETERMINERS:
            return words, _with_word(words, noun, _OTHER_NUMBER[words[noun]])


def _anaphor_pair(rng: random.Random) -> tuple[list[str], list[str]]:
    number = int(rng.random() < 0.5)
    sentence = _clause(rng, number=number, predicate="reflexive", modifier="none")
    head = _NOUN_BY_FORM[sentence.words[sentence.head]]
    return sentence.words, _with_word(sentence.words, sentence.object, head.reflexives[1 - number])


def _npi_pair(rng: random.Random, npi: str) -> tuple[list[str], list[str]]:
    # "No" becomes "the", which licenses nothing and fits either number.
    sentence = _clause(rng, predicate="transitive" if npi == "any" else None, licensor="no", npi=npi)
    return sentence.words, _with_word(sentence.words, 0, "the")


class _Paradigm(NamedTuple):
    uid: str
    field: str
    linguistics_term: str
    draw: Callable[[random.Random], tuple[list[str], list[str]]]


_PARADIGMS = (
    _Paradigm(
        "simple_subject_verb_agreement",
        "morphology",
        "subject_verb_agreement",
        partial(_agreement_pair, modifier="none"),
    ),
    _Paradigm(
        "distractor_agreement_prepositional_phrase",
        "morphology",
        "subject_verb_agreement",
        partial(_agreement_pair, modifier="pp"),
    ),
    _Paradigm(
        "distractor_agreement_subject_relative_clause",
        "morphology",
        "subject_verb_agreement",
        partial(_agreement_pair, modifier="subject_rc"),
    ),
    _Paradigm(
        "distractor_agreement_object_relative_clause",
        "morphology",
        "subject_verb_agreement",
        partial(_agreement_pair, modifier="object_rc"),
    ),
    _Paradigm(
        "negated_subject_verb_agreement",
        "morphology",
        "subject_verb_agreement",
        partial(_agreement_pair, modifier="none", licensor="not"),
    ),
    _Paradigm(
        "determiner_noun_agreement",
        "morphology",
        "determiner_noun_agreement",
        partial(_determiner_noun_pair, with_adjective=False),
    ),
    _Paradigm(
        "determiner_noun_agreement_with_adjective",
        "morphology",
        "determiner_noun_agreement",
        partial(_determiner_noun_pair, with_adjective=True),
    ),
    _Paradigm("anaphor_number_agreement", "morphology", "anaphor_agreement", _anaphor_pair),
    _Paradigm("npi_ever_licensed_by_no", "semantics", "npi_licensing", partial(_npi_pair, npi="ever")),
    _Paradigm("npi_any_licensed_by_no", "semantics", "npi_licensing", partial(_npi_pair, npi="any")),
)


def _paradigm_pairs(paradigm: _Paradigm, count: int, seed: int) -> list[dict]:
    # A stream of its own per paradigm, apart from the documents' stream, so that adding a
    # paradigm changes no other and the pairs are not the training text's sentences.
    rng = random.Random(f"babytrain-synthetic-pairs:{seed}:{paradigm.uid}")
    pairs: dict[str, str] = {}  # good sentence -> bad sentence, in draw order, without repeats
    for _ in range(count * _DRAWS_PER_PAIR):
        if len(pairs) == count:
            break
        good, bad = paradigm.draw(rng)
        pairs.setdefault(_format(good), _format(bad))
    if len(pairs) < count:
        raise ValueError(f"paradigm {paradigm.uid} has fewer than {count} distinct pairs")
    return [
        {
            "sentence_good": good,
            "sentence_bad": bad,
            "field": paradigm.field,
            "linguistics_term": paradigm.linguistics_term,
            "UID": paradigm.uid,
            "pairID": str(index),
        }
        for index, (good, bad) in enumerate(pairs.items())
    ]


def synthetic_minimal_pairs(pairs_per_paradigm: int = 200, seed: int = 0) -> list[dict]:
    """All paradigms' pairs, paradigm after paradigm, each dict with the six BLiMP keys."""
    return [pair for paradigm in _PARADIGMS for pair in _paradigm_pairs(paradigm, pairs_per_paradigm, seed)]


def synthetic_completions(items_per_paradigm: int = 200, seed: int = 0) -> list[dict]:
    """The minimal pairs as completion items: the words both sentences share before they differ
    are the `input_prefix`, the two endings the `options` (the grammatical one first), so the
    context decides which ending is right. Pairs that differ in their first word have no context
    and are left out (the NPI paradigms)."""
    items = []
    for pair in synthetic_minimal_pairs(items_per_paradigm, seed):
        good, bad = pair["sentence_good"].split(" "), pair["sentence_bad"].split(" ")
        shared = next(i for i, (g, b) in enumerate(zip(good, bad)) if g != b)
        if shared == 0:
            continue
        items.append(
            {
                "input_prefix": " ".join(good[:shared]) + " ",
                "options": [" ".join(good[shared:]), " ".join(bad[shared:])],
                "UID": pair["UID"],
                "field": pair["field"],
                "linguistics_term": pair["linguistics_term"],
                "sample_id": pair["pairID"],
            }
        )
    return items
