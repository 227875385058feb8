"""Item x watchlists -> Matches. Pure: no I/O, no clock.

How a term is compared (mode):
- fuzzy (default): the term is folded (see text.fold: case, umlauts, ß, diacritics, Cyrillic and
  transliteration variants) and cut to a stem (a German/Russian ending and trailing vowels removed).
  A word matches when it starts with the stem, so one entry covers inflections and compound heads
  (Nordkorea -> nordkoreanischen, Nordkorea-Soldaten; Курск -> Курской; 쿠르스크 -> 쿠르스크에서).
  Stems of three letters or fewer must be the whole word plus at most two letters (Kim, Kims, not
  Kimchi). Long stems (>= 8 letters) also accept a word whose start is within the term's threshold
  by rapidfuzz ratio (one typo or transliteration slip). Multi-word terms must match consecutive words.
- exact: the folded words must be equal; no stemming, no fuzz (Korean: a trailing particle aside, and a single
  Han character glued to a Korean word, as in 北노동자, counts on its own).
- acronym: case-sensitive, whole words of the original text (DPRK, KN-23).
- regex: RE2 over the original text (linear time: an admin's pattern cannot hang the bot).

Trade-offs: prefix stems buy recall across inflection at the price of occasional over-reach on
short stems, which is why short stems are held to whole words and why watchlists pair concepts
(place AND actor) instead of relying on a single word. Exclusions veto a match outright.

Speed: every distinct folded word is looked up once in an index keyed by its first letters, and
the result is cached per word, so the cost grows with the words of an item, not with the number
of terms; rapidfuzz only runs for long candidate words that share the first two letters with a term.
"""

from __future__ import annotations

import functools
import operator
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

import re2
from rapidfuzz import fuzz

from bot.config import Rule, Term, Watchlist, place_of
from bot.models import Match, TermHit
from bot.text import (
    DROPPED_MARKS,
    ELIDED_PARTICLE,
    FUNCTION_WORDS,
    MARKS,
    clean,
    fast_words,
    fold,
    fold_chars,
    fold_word,
    lead,
    words,
)

_GERMAN_ENDINGS = ("en", "er", "es", "em", "n", "s")
_VOWELS = set("aeiouyаеиоуэюя")
_FIELD_GAP = 3  # summary words are numbered after the title's, this many words further (for NEAR)
_EXCLUDE = "\x00exclude"
_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_HANGUL_OR_HAN = re.compile(r"[\uac00-\ud7a3\u4e00-\u9fff]")
_HAN_PREFIX = re.compile(r"[\u4e00-\u9fff][\uac00-\ud7a3]")
_CJK = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")  # Han and kana
_PROCLITIC_LETTERS = "\u0620-\u064a\u05d0-\u05ea"  # Arabic and Hebrew letters
_PROCLITIC_SCRIPT = re.compile(f"[{_PROCLITIC_LETTERS}]")
# Arabic: a conjunction (و, ف), then a preposition (ب, ل, ك), then the article (ال), each optional; Hebrew:
# up to two of ו ה ב ל מ ש כ. What is left must keep four letters: a shorter one is too often another word
# (העזה "the daring" is not ה + עזה Gaza, הקים "he set up" not ה + קים Kim); list such names' forms as aliases.
_ARABIC_PROCLITICS = tuple(sorted({c + p + a for c in ("", "و", "ف") for p in ("", "ب", "ل", "ك") for a in ("", "ال")}
                                  - {""}, key=len, reverse=True))
_HEBREW_PROCLITICS = "והבלמשכ"


def _without_proclitics(word: str) -> list[str]:
    """The bases an Arabic or Hebrew word can have under its one-letter prefixes (لإيران -> إيران, ايران;
    וברוסיה -> ברוסיה, רוסיה), longest prefix last."""
    if word[0] in _HEBREW_PROCLITICS:
        return [word[n:] for n in (1, 2) if len(word) - n >= 4 and all(c in _HEBREW_PROCLITICS for c in word[:n])]
    bases = [word[len(p):] for p in reversed(_ARABIC_PROCLITICS) if word.startswith(p) and len(word) - len(p) >= 4]
    if word.startswith("لل") and len(word) >= 6:  # li + al- writes one lam less: للكرملين = ل + الكرملين
        bases.append("ال" + word[2:])
    return bases
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_CACHE_LIMIT = 500_000
_REACH = {"title": 0, "title+lead": 1, "title+summary": 2}  # how far into the summary a watchlist reads
_LONG_SUMMARY = 600  # characters; past this, cutting to the lead first is cheaper than folding it all
_FUZZY_MIN = 8  # shorter stems are too close to other real words for edit-distance matching


def stem(word: str) -> str:
    """Cut a folded word to the prefix that its inflected forms share."""
    if _HANGUL.search(word):
        return word
    out = word
    floor = 4  # vowels are cut down to this length (Суджа -> Судж takes Судже, Суджу)
    for ending in _GERMAN_ENDINGS:
        if out.endswith(ending) and len(out) - len(ending) >= 5:
            out = out[: -len(ending)]
            # ... but not after an ending went too: "Beschuss" would end as "besh" (beschert,
            # Bescheid) and "soldier" as "sold".
            floor = 5
            break
    while len(out) > floor and out[-1] in _VOWELS:
        out = out[:-1]
    # Russian and Ukrainian decline four-letter nouns too (дуга/дуге, мины/мин): cut their last vowel.
    if len(word) == 4 and out == word and out[-1] in _VOWELS and _CYRILLIC.match(out):
        out = out[:-1]
    return out


@dataclass(frozen=True, slots=True)
class _Atom:
    """One spelling of one term, as compiled for lookup."""

    watchlist: int
    group: str  # group name, or _EXCLUDE
    term: Term
    parts: tuple[str, ...]  # folded stems (fuzzy), folded words (exact), original words (acronym)
    threshold: float
    later: tuple[int, ...] = ()  # for phrases: an id per later word's (part, threshold, mode), see _rest_score
    spelling: str = ""  # the term or alias it was compiled from (fuzzy mode), for `backtest --words`
    inside: bool = False  # Chinese or Japanese: matches anywhere inside a word (those scripts have no spaces)


class _WordCache:
    """What each word of the stream was found to hit, kept between items. Replaced whole when full, never
    cleared in place (see Matcher._bound_cache)."""

    __slots__ = ("group_keys", "hits", "no_hit", "starts")

    def __init__(self) -> None:
        self.hits: dict[str, tuple[tuple[_Atom, float], ...]] = {}  # word -> the atoms it hits, with scores
        self.group_keys: dict[str, frozenset[tuple[int, str]]] = {}  # word -> (watchlist, group) it may hit
        self.no_hit: set[str] = set()  # words known to match no term: skipped with one set difference
        self.starts: dict[str, tuple[_Atom, ...]] = {}  # a word's first 3 letters -> its prefix candidates


# Korean case particles and endings that attach to a noun (북러 조약을, 리창은, 쿠르스크에서), longest first.
_PARTICLE_LIST = ("이 가 은 는 을 를 의 에 와 과 도 만 로 으로 에서 에게 께서 까지 부터 처럼 보다 서 과의 와의 에서의 "
                  "에서는 에는 으로는 로는 이라고 라고 이다 였다 이었다")
_PARTICLES = tuple(sorted(_PARTICLE_LIST.split(), key=len, reverse=True))


def _strip_particle(word: str) -> str:
    """A Hangul word without its trailing particle: `exact` terms in Korean still match 리창은, but not
    the longer name 리창호 that a prefix match would take. A single Han character keeps its particle
    off too (北에, 北의: Korean headlines write North Korea as 北)."""
    for particle in _PARTICLES:
        if word.endswith(particle) and (len(word) > len(particle) + 1 or not _HANGUL.match(word)):
            return word[: -len(particle)]
    return word


def _spelling_words(spelling: str) -> list[str]:
    """A term's spelling as the matcher compares it: cleaned, folded, split into words."""
    return words(fold(clean(spelling)))


def _word_score(stem_: str, word: str, threshold: float, fuzzy: bool) -> float:
    """How well `word` matches `stem_` (0 when it does not)."""
    if word.startswith(stem_):
        extra = len(word) - len(stem_)
        if extra == 0:
            return 100.0
        if _HANGUL.match(stem_):
            return 100.0 if len(stem_) >= 2 or extra <= 1 else 0.0
        if len(stem_) <= 3:
            return 100.0 if extra <= 2 else 0.0
        return 100.0
    if fuzzy and len(stem_) >= _FUZZY_MIN and len(word) >= len(stem_):
        score = fuzz.ratio(stem_, word[: len(stem_)])
        if score >= threshold:
            return float(score)
    return 0.0


def _can_fuzz(length: int, threshold: float) -> bool:
    """Can a word that does not start with a stem of this length still reach the threshold? Fuzzy
    matching compares equal lengths, where rapidfuzz's ratio is 100 * (1 - d / 2L) and the smallest
    change (one substitution) costs d = 2: at 90, stems under 10 letters only ever match exactly, and
    scoring them against every word with the same first letters would be wasted work."""
    return 100.0 * (length - 1) >= threshold * length


class _Tokens:
    """The words of one field: folded for lookup; the original spelling only when needed (lazily)."""

    __slots__ = ("_as_written", "_orig", "_spans", "field", "folded", "offset", "text")

    def __init__(self, text: str, folded: list[str], offset: int, field: str) -> None:
        self.text = text
        self.folded = folded
        self.offset = offset
        self.field = field
        self._orig: list[str] | None = None
        self._as_written = False  # cleaning changed nothing: each word of `orig` is as written
        self._spans: list[tuple[int, int]] | None = None

    def written(self, i: int, n: int) -> str:
        """Words i..i+n-1 as the text has them, separators included ("KN-23", "DPRK's"), for explanations."""
        orig = self.orig
        if n == 1 and self._as_written:
            return orig[i]  # the common case, and cheap: no second scan of the text
        if self._spans is None:
            self._spans = [m.span() for m in _WRITTEN_WORD.finditer(self.text)]
        if len(self._spans) != len(self.folded) or i + n > len(self._spans):
            return " ".join(orig[i : i + n])  # NFKC changed the words (rare): the cleaned words
        return self.text[self._spans[i][0] : self._spans[i + n - 1][1]]

    @property
    def orig(self) -> list[str]:
        if self._orig is None:
            cleaned = clean(self.text)
            orig = fast_words(cleaned)
            self._orig = orig if len(orig) == len(self.folded) else self.folded
            self._as_written = cleaned == self.text and self._orig is orig
        return self._orig


# A word as written: the characters clean() drops join words, so "Kim's" is one word, as for matching; at a
# word's edges they are quotes and stay outside. An elided particle (l'Iran) is a word of its own, as in clean().
_WRITTEN_WORD = re.compile(f"{ELIDED_PARTICLE}|\\w(?:[\\w{MARKS}{DROPPED_MARKS}]*[\\w{MARKS}])?")

# One hit of a word (or phrase) in an item: (position, score, atom, the field's tokens, word index).
_Entry = tuple[int, float, _Atom, _Tokens, int]


def _takes_s(part: str) -> bool:
    """An acronym ending in a capital or a digit takes English plural and possessive s: "DPRK's" (the
    apostrophe is dropped before words are split, so "DPRKs"), "KN-23s". The s is lower case, so a
    different acronym is not taken."""
    return part[-1:].isupper() or part[-1:].isdigit()


def _acronym_at(orig: Sequence[str], i: int, parts: tuple[str, ...]) -> bool:
    """Do the original words at `i` spell the acronym `parts` (its last word may carry an s)?"""
    n = len(parts)
    if len(orig) < i + n or tuple(orig[i : i + n - 1]) != parts[:-1]:
        return False
    last = orig[i + n - 1]
    return last == parts[-1] or (last == parts[-1] + "s" and _takes_s(parts[-1]))


class Matcher:
    """Watchlists compiled for fast matching. Build once per config; reuse for every item."""

    def __init__(self, watchlists: Sequence[Watchlist]) -> None:
        self.watchlists = [w for w in watchlists if w.enabled]
        self._prefix: list[dict[str, list[_Atom]]] = [{}, {}, {}]  # keyed by the stem's first 1, 2, 3 chars
        self._fuzzy: dict[str, list[_Atom]] = {}  # long stems keyed by the first 2 chars
        self._exact: dict[str, list[_Atom]] = {}
        self._acronym: dict[str, list[_Atom]] = {}
        self._regex: list[tuple[_Atom, re2._Regexp]] = []
        self._inside: list[_Atom] = []  # Chinese and Japanese terms, found inside words
        self._proclitics = False  # some term is Arabic or Hebrew: words of those scripts are tried without prefixes
        self._words = _WordCache()
        # The later words of phrases: (part, threshold, exact) -> id, and (id, word) -> score, cached.
        self._part_ids: dict[tuple[str, float, bool], int] = {}
        self._part_of: dict[int, tuple[str, float, bool]] = {}
        self._later_scores: dict[tuple[int, str], float] = {}
        # How far into the summary each watchlist reads: 0 none (title), 1 its lead, 2 all of it.
        self._reach = [_REACH[w.fields] for w in self.watchlists]
        self._max_reach = max(self._reach, default=_REACH["title+summary"])
        self._any_lead = _REACH["title+lead"] in self._reach
        self._acronym_folded: frozenset[str] = frozenset()
        for wi, wl in enumerate(self.watchlists):
            for group, terms in wl.groups.items():
                for term in terms:
                    self._add(wi, group, term, wl.threshold)
            for term in wl.exclude:
                self._add(wi, _EXCLUDE, term, wl.threshold)
        # Each rule's (watchlist, group) keys, listed under its first key: an item can only match a
        # rule whose first key some word hit, so the pre-check looks at few rules however many exist.
        self._rules_by_key: dict[tuple[int, str], list[frozenset[tuple[int, str]]]] = {}
        for wi, wl in enumerate(self.watchlists):
            for rule in wl.rules:
                if rule.groups:
                    self._rules_by_key.setdefault((wi, rule.groups[0]), []).append(
                        frozenset((wi, g) for g in rule.groups))
        self._first_keys = frozenset(self._rules_by_key)
        self._acronym_by_folded: dict[str, list[_Atom]] = {}
        for key, atoms in self._acronym.items():
            self._acronym_by_folded.setdefault(fold_chars(key), []).extend(atoms)
        self._acronym_folded = frozenset(self._acronym_by_folded)
        self._part_of = {i: key for key, i in self._part_ids.items()}
        self._all_watchlists = set(range(len(self.watchlists)))
        # Per watchlist, each rule with its groups as sets (subset tests run in C).
        self._rule_sets = [
            [(rule, frozenset(rule.groups), frozenset(rule.unless), frozenset(rule.unless_any)) for rule in wl.rules]
            for wl in self.watchlists
        ]

    def _add(self, wi: int, group: str, term: Term, default_threshold: float) -> None:
        threshold = term.threshold or default_threshold
        for spelling in term.spellings:
            if term.mode == "regex":
                atom = _Atom(wi, group, term, (spelling,), threshold)
                self._regex.append((atom, re2.compile(spelling)))
                continue
            if term.mode == "acronym":
                parts = tuple(words(clean(spelling)))
                if parts:
                    atom = _Atom(wi, group, term, parts, threshold)
                    self._acronym.setdefault(parts[0], []).append(atom)
                    if len(parts) == 1 and _takes_s(parts[0]):
                        self._acronym.setdefault(parts[0] + "s", []).append(atom)  # DPRK's, DPRKs
                continue
            folded = tuple(_spelling_words(spelling))
            if not folded:
                continue
            if len(folded) == 1 and len(folded[0]) >= 2 and _CJK.search(folded[0]) and not _HANGUL.search(folded[0]):
                # Chinese and Japanese run a clause together as one "word": look for the term inside it.
                self._inside.append(_Atom(wi, group, term, folded, threshold, spelling=spelling, inside=True))
                continue
            self._proclitics = self._proclitics or bool(_PROCLITIC_SCRIPT.match(folded[0]))
            if term.mode == "exact":
                self._exact.setdefault(folded[0], []).append(
                    _Atom(wi, group, term, folded, threshold, self._later_ids(folded, threshold, True)))
                continue
            stems = tuple(stem(w) for w in folded)
            atom = _Atom(wi, group, term, stems, threshold, self._later_ids(stems, threshold, False), spelling)
            first = stems[0]
            key_len = min(3, len(first))
            self._prefix[key_len - 1].setdefault(first[:key_len], []).append(atom)
            if len(first) >= _FUZZY_MIN and not _HANGUL.search(first) and _can_fuzz(len(first), threshold):
                self._fuzzy.setdefault(first[:2], []).append(atom)

    def _later_ids(self, parts: tuple[str, ...], threshold: float, exact: bool) -> tuple[int, ...]:
        """An id for each later word of a phrase, shared by every phrase with that word, threshold and mode."""
        return tuple(self._part_ids.setdefault((part, threshold, exact), len(self._part_ids)) for part in parts[1:])

    # -- per word lookup -------------------------------------------------------------------

    def _lookup(self, raw: str, cache: _WordCache) -> tuple[tuple[_Atom, float], ...]:
        """Atoms whose first part matches a word (as fold_chars left it), with scores. Cached per word."""
        cached = cache.hits.get(raw)
        if cached is not None:
            return cached
        word = fold_word(raw)
        found: dict[int, tuple[_Atom, float]] = {}
        self._first_part_hits(word, cache, found)
        if not word.isascii():
            if self._inside and _CJK.search(word):
                for atom in self._inside:
                    if atom.parts[0] in word:
                        found[id(atom)] = (atom, 100.0)
            elif self._proclitics and _PROCLITIC_SCRIPT.match(word):  # Arabic and Hebrew glue "and", "to" on
                for base in _without_proclitics(word):
                    self._first_part_hits(base, cache, found)
        result = tuple(found.values())
        if result:
            cache.group_keys[raw] = frozenset((a.watchlist, a.group) for a, _ in result)
            cache.hits[raw] = result  # after its group keys: another thread may see the hit at once
        else:
            cache.no_hit.add(raw)
        return result

    def _first_part_hits(self, word: str, cache: _WordCache, found: dict[int, tuple[_Atom, float]]) -> None:
        """Add to `found` the atoms whose first part a folded word matches, with their scores."""
        start = word[:3]
        candidates = cache.starts.get(start)
        if candidates is None:  # the atoms keyed by the word's first 1, 2 and 3 letters, once per start
            candidates = cache.starts[start] = tuple(
                atom for n in range(1, len(start) + 1) for atom in self._prefix[n - 1].get(start[:n], ()))
        for atom in candidates:
            if word.startswith(atom.parts[0]):  # (most candidates share only the first letters)
                score = _word_score(atom.parts[0], word, atom.threshold, fuzzy=False)
                if score:
                    found[id(atom)] = (atom, score)
        if len(word) >= _FUZZY_MIN - 1:
            for atom in self._fuzzy.get(word[:2], ()):
                if id(atom) not in found:
                    score = _word_score(atom.parts[0], word, atom.threshold, fuzzy=True)
                    if score:
                        found[id(atom)] = (atom, score)
        for atom in self._exact.get(word, ()):
            found[id(atom)] = (atom, 100.0)
        if self._exact and not word.isascii() and _HANGUL_OR_HAN.match(word):
            base = _strip_particle(word)
            if base != word:
                for atom in self._exact.get(base, ()):
                    found[id(atom)] = (atom, 100.0)
            if _HAN_PREFIX.match(word):  # 北노동자, 北군: a Han abbreviation glued to a Korean noun
                for atom in self._exact.get(word[0], ()):
                    found[id(atom)] = (atom, 100.0)

    def _bound_cache(self) -> _WordCache:
        """The per-word caches for one item. Once they hold _CACHE_LIMIT words (a stream's vocabulary keeps
        growing with names and numbers) they are replaced by empty ones, never cleared: the pipeline matches
        in several threads with one Matcher, and an item keeps the caches it started with to its end."""
        cache = self._words
        if len(cache.hits) + len(cache.no_hit) >= _CACHE_LIMIT:
            cache = self._words = _WordCache()
        return cache

    # -- for admins --------------------------------------------------------------------------

    def words_taken(self, texts: Iterable[tuple[str, str]]) -> dict[tuple[int, Term], Counter[str]]:
        """(watchlist index, term) -> the words of these (title, summary) texts that one of the term's
        fuzzy one-word spellings takes although they are not that spelling, counted once per text.

        Mostly inflections and compounds, which is the point of stems; but a stem also takes words
        nobody meant (Putin -> "putting", treaty -> "treatment", мины -> "минут"). `mediabot
        backtest --words` lists them so an admin can see that before it costs an alert."""
        taken: dict[tuple[int, Term], Counter[str]] = {}
        spelled: dict[Term, set[str]] = {}
        for title, summary in texts:
            cache = self._bound_cache()
            title_words, summary_words = _fold_fields(title, summary)
            # Shown as written (lower case), not folded: "kämpfen", "курской", not "kaempfen", "курскои".
            written_as: dict[str, str] = {}
            for text, folded_words in ((title, title_words), (summary, summary_words)):
                original = fast_words(clean(text)) if folded_words else []
                if len(original) == len(folded_words):
                    for w, o in zip(folded_words, original, strict=True):
                        written_as.setdefault(w, o.lower())
            for word in {*title_words, *summary_words}:
                folded = fold_word(word)
                by: dict[tuple[int, Term], list[str]] = {}  # the spellings of each term that take the word
                for atom, _score in self._lookup(word, cache):
                    if atom.term.mode != "fuzzy" or len(atom.parts) > 1 or folded == atom.parts[0]:
                        continue
                    written = spelled.get(atom.term)
                    if written is None:
                        written = spelled[atom.term] = {w for sp in atom.term.spellings for w in _spelling_words(sp)}
                    if folded in written:
                        continue  # written out as an alias: meant
                    by.setdefault((atom.watchlist, atom.term), []).append(atom.spelling)
                for (wi, term), spellings in by.items():
                    shown = written_as.get(word, word)
                    if term.term not in spellings:  # an alias took it: name it (a term may have ten)
                        shown = f"{shown} (by {spellings[0]})"
                    taken.setdefault((wi, term), Counter())[shown] += 1
        return taken

    # -- per item --------------------------------------------------------------------------

    def match(self, title: str, summary: str = "") -> list[Match]:
        """Every watchlist the text matches, best score first."""
        summary, head = self._read(summary)
        wcache = self._bound_cache()
        title_words, summary_words = _fold_fields(title, summary)
        cache = wcache.hits
        # Stage 1: which words hit some term, and which watchlists could still match from the groups
        # present. Set operations (in C) over the item's distinct words: words known to match nothing
        # drop out with one difference, and only words never seen before are looked up.
        distinct = set(title_words)
        if summary_words:
            distinct.update(summary_words)
        hits = distinct - wcache.no_hit  # the words that hit some term, once the unseen ones are looked up
        for word in hits.difference(cache):  # never seen before (the cache holds the words that hit)
            if not self._lookup(word, wcache):
                hits.discard(word)
        # (watchlist, group) pairs some word may satisfy
        keys: set[tuple[int, str]] = set().union(*map(wcache.group_keys.__getitem__, hits))
        if self._acronym:
            for key in self._acronym_folded & distinct:
                keys.update((a.watchlist, a.group) for a in self._acronym_by_folded[key])
        if not self._regex:
            # The watchlists some rule of which the groups present could satisfy: the position walk
            # below only needs their atoms (a third of the hits, on a stream like bench_matching's, are
            # words of a list that cannot match the item anyway).
            live: set[int] = set()
            rules_by_key = self._rules_by_key
            for group_key in keys & self._first_keys:
                if group_key[0] not in live and any(rule <= keys for rule in rules_by_key[group_key]):
                    live.add(group_key[0])
            if not live:
                return []  # the common case: nothing can match, skip the position walk
        else:
            live = self._all_watchlists
        raw, regex_hits, fields = self._collect(title, summary, head, title_words, summary_words, hits, live, cache)
        matches = []
        for wi in set(raw) | set(regex_hits):
            token_groups = raw.get(wi, {})
            regex_groups = regex_hits.get(wi, {})
            present = token_groups.keys() | regex_groups.keys()
            decided = self._decide(wi, present, token_groups, regex_groups, fields[-1].offset)
            if decided is not None:
                matches.append(decided)
        matches.sort(key=lambda m: (-m.score, m.watchlist))
        return matches

    def _read(self, summary: str) -> tuple[str, str | None]:
        """The part of the summary some watchlist reads, and its lead when that is already known."""
        if self._max_reach == 0:
            return "", None  # no watchlist reads past the headline
        if self._max_reach == 1 and len(summary) > _LONG_SUMMARY:
            head = lead(summary)  # a full-text feed: fold only what some watchlist reads
            return head, head
        return summary, None

    def _collect(self, title: str, summary: str, head: str | None, title_words: list[str], summary_words: list[str],
                 hits: AbstractSet[str], live: AbstractSet[int], cache: dict[str, tuple[tuple[_Atom, float], ...]],
                 ) -> tuple[dict[int, dict[str, list[_Entry]]], dict[int, dict[str, list[TermHit]]], list[_Tokens]]:
        """Stage 2: the hits of the `live` watchlists with their places, multi-word terms and acronyms
        included: (watchlist -> group -> token hits, watchlist -> group -> regex hits, the fields). `cache`:
        the word cache the item started with (`hits`: its words that hit some term). TermHits are built
        only for the rule that decides a watchlist's match (see _decide)."""
        raw: dict[int, dict[str, list[_Entry]]] = {}
        fields = [_Tokens(title, title_words, 0, "title")]
        if summary_words:
            fields.append(_Tokens(summary, summary_words, len(title_words) + _FIELD_GAP, "summary"))
        # The summary as each reach sees it: (text, number of words).
        if head is None:
            head = lead(summary) if self._any_lead and summary_words else summary
        head_words = len(fast_words(fold_chars(head))) if len(head) < len(summary) else len(summary_words)
        seen_text = ("", head, summary)
        seen_words = (0, head_words, len(summary_words))
        reach = self._reach
        for tokens in fields:
            folded = tokens.folded
            summary_field = tokens.field == "summary"
            for i, word in enumerate(folded) if hits else ():
                found = cache.get(word)  # the cache holds exactly the words that hit
                if not found:
                    continue
                for atom, score in found:
                    if atom.watchlist not in live or (summary_field and i >= seen_words[reach[atom.watchlist]]):
                        continue
                    if atom.later:
                        score = self._rest_score(atom, folded, i, score)
                        if not score:
                            continue
                    raw.setdefault(atom.watchlist, {}).setdefault(atom.group, []).append(
                        (tokens.offset + i, score, atom, tokens, i))
            if self._acronym and not self._acronym_folded.isdisjoint(folded):
                orig = tokens.orig
                for i, word in enumerate(orig):
                    for atom in self._acronym.get(word, ()):
                        if summary_field and i >= seen_words[reach[atom.watchlist]]:
                            continue
                        if _acronym_at(orig, i, atom.parts):
                            raw.setdefault(atom.watchlist, {}).setdefault(atom.group, []).append(
                                (tokens.offset + i, 100.0, atom, tokens, i))
        regex_hits: dict[int, dict[str, list[TermHit]]] = {}
        if self._regex:
            summary_offset = fields[1].offset if len(fields) > 1 else 0
            for field_name, text, offset in (("title", title, 0), ("summary", summary, summary_offset)):
                if not text:
                    continue
                for atom, rx in self._regex:
                    target = seen_text[reach[atom.watchlist]] if field_name == "summary" else text
                    m = rx.search(target) if target else None
                    if m:
                        pos = offset + len(words(clean(text[: m.start()])))
                        regex_hits.setdefault(atom.watchlist, {}).setdefault(atom.group, []).append(
                            TermHit(atom.term.term, m.group(0), field_name, pos, 100.0))
        return raw, regex_hits, fields

    def explain(self, title: str, summary: str = "") -> list[dict[str, Any]]:
        """Why each watchlist that some term hit did or did not match (`mediabot match --explain`): the words
        each group took, the words of `exclude:`, and per rule whether it held and, if not, why. A veto that
        worked and no hit at all look the same in a match's result; an admin checking a list needs to tell
        them apart. Places every hit of every watchlist, so it is slower than match(); not for the stream."""
        summary, head = self._read(summary)
        wcache = self._bound_cache()
        title_words, summary_words = _fold_fields(title, summary)
        hits = {w for w in {*title_words, *summary_words} if self._lookup(w, wcache)}
        raw, regex_hits, _ = self._collect(title, summary, head, title_words, summary_words, hits,
                                           self._all_watchlists, wcache.hits)
        out = []
        for wi in sorted(set(raw) | set(regex_hits)):
            wl = self.watchlists[wi]
            token_groups, regex_groups = raw.get(wi, {}), regex_hits.get(wi, {})
            words: dict[str, list[str]] = {}
            titled: dict[str, bool] = {}
            positions: dict[str, list[int]] = {}
            for g, entries in token_groups.items():
                words[g] = list(dict.fromkeys(_written(atom, tokens, i) for _, _, atom, tokens, i in entries))
                titled[g] = any(tokens.field == "title" for _, _, _, tokens, _ in entries)
                positions[g] = [e[0] for e in entries]
            for g, regex in regex_groups.items():
                words.setdefault(g, []).extend(h.text for h in regex)
                titled[g] = titled.get(g, False) or any(h.field == "title" for h in regex)
                positions.setdefault(g, []).extend(h.position for h in regex)
            excluded = words.pop(_EXCLUDE, [])
            rules = [{"line": rule.line, "all": list(rule.groups), "held": why is None, **({"why": why} if why else {})}
                     for rule in wl.rules for why in [_why_not(rule, words.keys(), titled, positions, excluded)]]
            out.append({"watchlist": wl.id, "matched": any(r["held"] for r in rules), "groups": words,
                        **({"excluded_by": excluded} if excluded else {}), "rules": rules})
        return out

    def _rest_score(self, atom: _Atom, folded: list[str], i: int, score: float) -> float:
        """Score of a multi-word term starting at word i (0 when the following words do not match)."""
        later = atom.later
        if i + len(later) >= len(folded):
            return 0.0
        scores = self._later_scores
        for k, part_id in enumerate(later, i + 1):
            raw_word = folded[k]
            s = scores.get((part_id, raw_word))
            if s is None:  # the words after a phrase's first word recur as often: score each pair once
                if len(scores) >= _CACHE_LIMIT:
                    scores.clear()
                part, threshold, exact = self._part_of[part_id]
                word = fold_word(raw_word)
                s = (100.0 if word == part else 0.0) if exact else _word_score(part, word, threshold, True)
                scores[(part_id, raw_word)] = s
            if not s:
                return 0.0
            score = min(score, s)
        return score

    def _decide(self, wi: int, present: AbstractSet[str], token_groups: dict[str, list[_Entry]],
                regex_groups: dict[str, list[TermHit]], summary_offset: int) -> Match | None:
        """The best rule a watchlist's hits satisfy, as a Match. TermHits (which need the original
        spelling of each hit word) are built only for the winning rule's groups, one per term and place
        (two spellings of a term, or one term in two groups, hit the same word), each at its word in its
        own field (positions while matching run on across the headline into the summary, for NEAR)."""
        if _EXCLUDE in present:
            return None
        # The rules whose group tests hold (set tests, cheap); headline, NEAR and scores only for those.
        rules = [rule for rule, groups, unless, unless_any in self._rule_sets[wi]
                 if groups <= present and not (unless and unless <= present)
                 and not (unless_any and not unless_any.isdisjoint(present))]
        if not rules:
            return None

        # Per group present, once (most rules share their groups): does it hit the headline (a group's
        # entries are in walk order, headline first), its best score (rounding keeps the order of scores).
        titled = {g: entries[0][3].field == "title" for g, entries in token_groups.items()}
        top = {g: round(max(map(_score_of, entries)), 1) for g, entries in token_groups.items()}
        for g, regex in regex_groups.items():
            titled[g] = titled.get(g, False) or any(h.field == "title" for h in regex)
            top[g] = max(top.get(g, 0.0), max(h.score for h in regex))

        best: tuple[float, tuple[str, ...]] | None = None
        for rule in rules:
            if any(titled.get(g, False) for g in rule.unless_title):
                continue
            if rule.title and not all(titled[g] for g in rule.title):
                continue
            if rule.near is not None:
                positions = {g: [e[0] for e in token_groups.get(g, ())] + [h.position for h in regex_groups.get(g, ())]
                             for g in rule.groups}
                if not _near(positions, rule.near):
                    continue
            score = min(top[g] for g in rule.groups)
            if best is None or score > best[0]:
                best = (score, rule.groups)
        if best is None:
            return None
        found: dict[tuple[str, str, int], TermHit] = {}
        for g in best[1]:
            for _, score, atom, tokens, i in token_groups.get(g, ()):
                hit = TermHit(atom.term.term, _written(atom, tokens, i), tokens.field, i, round(score, 1))
                key = (hit.term, hit.field, i)
                if key not in found or found[key].score < hit.score:
                    found[key] = hit
            for hit in regex_groups.get(g, ()):
                if hit.field == "summary":
                    hit = hit._replace(position=hit.position - summary_offset)
                found.setdefault((hit.term, hit.field, hit.position), hit)
        hits = sorted(found.values(), key=_place_of)
        return Match(self.watchlists[wi].id, best[0], tuple(hits))


def _why_not(rule: Rule, present: AbstractSet[str], titled: dict[str, bool], positions: dict[str, list[int]],
             excluded: list[str]) -> str | None:
    """Why a rule does not hold, in the admin's words, or None when it holds: the same tests as
    Matcher._decide, in its order."""
    if excluded:
        return f"exclude: took {', '.join(excluded)}"
    missing = [g for g in rule.groups if g not in present]
    if missing:
        return f"no hit for {', '.join(missing)}"
    if rule.unless and all(g in present for g in rule.unless):
        return f"unless: {', '.join(rule.unless)} all hit"
    if any(g in present for g in rule.unless_any):
        return f"unless_any: {', '.join(g for g in rule.unless_any if g in present)} hit"
    if any(titled.get(g, False) for g in rule.unless_title):
        return f"unless_title: {', '.join(g for g in rule.unless_title if titled.get(g, False))} in the headline"
    if rule.title and not all(titled.get(g, False) for g in rule.title):
        return f"title: {', '.join(g for g in rule.title if not titled.get(g, False))} not in the headline"
    if rule.near is not None and not _near({g: positions.get(g, []) for g in rule.groups}, rule.near):
        return f"near: the groups' hits are more than {rule.near} words apart"
    return None


_BREAK = "__mediabot_field_break__"
_score_of = operator.itemgetter(1)  # an _Entry's score


def _written(atom: _Atom, tokens: _Tokens, i: int) -> str:
    """What an atom took at word i, as the text writes it. For a Chinese or Japanese term (the word is a
    whole clause) the term with a character either side, so a reader sees a word it sits inside (美国 in
    南美国家, South American countries)."""
    if not atom.inside:
        return tokens.written(i, len(atom.parts))
    clause = tokens.written(i, 1)
    at = clause.find(atom.spelling)
    return atom.spelling if at < 0 else clause[max(0, at - 1) : at + len(atom.spelling) + 1]


def _place_of(hit: TermHit) -> tuple[bool, int]:
    """A hit's place in reading order: the headline first, then the summary."""
    return hit.field != "title", hit.position


def _fold_fields(title: str, summary: str) -> tuple[list[str], list[str]]:
    """Fold and split title and summary in one pass (one normalisation, one regex scan)."""
    if not summary:
        return fast_words(fold_chars(title)), []
    folded = fast_words(fold_chars(f"{title} {_BREAK} {summary}"))
    try:
        cut = folded.index(_BREAK)
    except ValueError:  # cannot happen unless NFKC changed the marker; fall back to two passes
        return fast_words(fold_chars(title)), fast_words(fold_chars(summary))
    return folded[:cut], folded[cut + 1 :]


def _near(positions: dict[str, list[int]], within: int) -> bool:
    """Every pair of the groups has hits at most `within` words apart."""
    names = list(positions)
    for a_i, a in enumerate(names):
        for b in names[a_i + 1 :]:
            if not any(abs(x - y) <= within for x in positions[a] for y in positions[b]):
                return False
    return True


_SHOUTED = re.compile(r"^[A-ZА-ЯЁІЇЄҐ][A-ZА-ЯЁІЇЄҐ0-9-]{1,3}s?$")


def lint_watchlists(watchlists: Sequence[Watchlist]) -> list[str]:
    """Legal but probably unintended: `file:line: warning: ...` lines for `mediabot check`.

    A short capitalised word in fuzzy mode (POW, ВСУ) is folded and stemmed like any word, so it also
    matches the start of longer words (POW -> power); as an acronym it matches only itself.

    A fuzzy term cut to two or three letters (Öl -> "ol", мины -> "мин") takes short words that start
    with them (old, минут).

    A fuzzy term that also matches a common word of one of the feeds' languages (English "war" is
    German "war", was) counts in every text of that language.

    A group that no rule names never counts (often left behind when a rule was removed), and a spelling
    listed twice in one term is dead weight: both hide what an edit changes. A spelling that is also in
    `exclude:` vetoes every item it would match.

    Slips that YAML takes without a word: a list written without commas (`[Israel Израиль]`, one phrase
    that never matches), an acronym written in lower case (it matches the everyday word, not the
    acronym), AND/OR inside a term (read as words), and a list of three or more groups without `rules:`
    (every group is then required, a group meant for a veto too).
    """
    out: list[str] = []
    for wl in watchlists:
        out += [*wl.warnings, *_unused_groups(wl), *_repeated_spellings(wl), *_excluded_spellings(wl), *_slips(wl)]
        terms = [t for ts in wl.groups.values() for t in ts] + list(wl.exclude)
        for term in terms:
            if term.mode != "fuzzy":
                continue
            for spelling in term.spellings:
                if _SHOUTED.match(spelling):
                    out.append(f"{wl.source}:{term.line}: warning: {spelling!r} is fuzzy, so it also matches "
                               f"longer words that start with it; write it as {{term: {spelling}, mode: acronym}}")
                    continue
                parts = _spelling_words(spelling)
                if len(parts) != 1:
                    continue  # a phrase: its words must follow each other, a short stem takes little
                stem_ = stem(parts[0])
                # Hangul and Han words are not stemmed: a short one is a whole word (북한, 北), not a cut stem.
                if not _HANGUL_OR_HAN.search(stem_) and (len(stem_) <= 2 or (len(stem_) == 3 and len(parts[0]) > 3)):
                    out.append(f"{wl.source}:{term.line}: warning: {spelling!r} is matched as {stem_!r}, so it "
                               f"also takes other words up to two letters longer (Öl -> 'old', мины -> 'минут'); "
                               f"write it as {{term: {spelling}, mode: exact}} with its inflected forms as aliases")
                    continue
                common = _common_words_taken(stem_)
                if common:
                    out.append(f"{wl.source}:{term.line}: warning: {spelling!r} also matches {common[0]!r}, one "
                               f"of the commonest words of a feed language, so it counts in almost every text of "
                               f"that language; use a phrase instead (e.g. 'the {spelling}')")
    return sorted(dict.fromkeys(out), key=place_of)  # in file and line order, each once


_SCRIPTS = (("Latin", re.compile(r"[a-zà-ÿ]", re.IGNORECASE)), ("Cyrillic", _CYRILLIC), ("Korean", _HANGUL))


def _names_in_scripts(spelling: str) -> set[str]:
    """The scripts of a phrase's words, leaving out an acronym beside a word ("ЗРК Patriot", "ракеты ATACMS"
    are real phrases) and words with figures ("истребители F-16"). Words in two scripts in one term ("israel
    израиль", "NATO НАТО") are a list written without commas."""
    words_ = spelling.split()
    acronyms = [w for w in words_ if w.isupper() and len(w) <= 6]
    counted = words_ if len(acronyms) == len(words_) else [w for w in words_ if w not in acronyms]
    found: set[str] = set()
    for word in counted:
        if len(word) >= 3 and not any(ch.isdigit() for ch in word):
            found.update(script for script, rx in _SCRIPTS if rx.match(word))
    return found


def _slips(wl: Watchlist) -> list[str]:
    out = []
    if len(wl.rules) == 1 and wl.rules[0].line == 0 and len(wl.groups) >= 3:
        out.append(f"{wl.source}:1: warning: no `rules:`, so an item must hit all {len(wl.groups)} groups together "
                   f"({', '.join(wl.groups)}); if a group is meant for a veto or as an alternative, write `rules:`")
    for term in (*(t for terms in wl.groups.values() for t in terms), *wl.exclude):
        if term.mode == "regex":
            continue
        written = "".join(term.spellings)
        if term.mode == "acronym" and not any(map(str.isupper, written)) and any(map(str.islower, written)):
            out.append(f"{wl.source}:{term.line}: warning: {term.term!r} is an acronym in lower case: acronyms match "
                       f"case-sensitively, so it takes the word {term.term!r}, not {term.term.upper()!r}; write it "
                       "as it appears in headlines")
        for spelling in term.spellings:
            if ";" in spelling or len(_names_in_scripts(spelling)) >= 2:
                out.append(f"{wl.source}:{term.line}: warning: {spelling!r} is one term whose words must all follow "
                           "each other; if it is meant as several spellings, separate them with commas "
                           "([Israel, Израиль]) or list them one per line")
            elif re.search(r"\b(?:AND|OR|NOT)\b", spelling) and term.mode != "acronym":
                out.append(f"{wl.source}:{term.line}: warning: {spelling!r}: AND, OR and NOT inside a term are read as "
                           "words; put alternatives in one group and required concepts in separate groups of a rule")
            elif term.mode != "acronym" and _SHORT_UNDER_PROCLITICS.fullmatch(fold(spelling)) and not any(
                    _PROCLITIC_SCRIPT.match(a) and len(fold(a)) > len(fold(spelling)) for a in term.spellings):
                out.append(f"{wl.source}:{term.line}: warning: {spelling!r} has three letters or fewer, so it does not "
                           "match under the one-letter prefixes Arabic and Hebrew glue on (بغزة, לעזה): list the "
                           "forms the feeds write as aliases")
    return out


_SHORT_UNDER_PROCLITICS = re.compile(f"[{_PROCLITIC_LETTERS}]{{2,3}}")  # one Arabic or Hebrew word of 2-3 letters


def _unused_groups(wl: Watchlist) -> list[str]:
    named = {g for rule in wl.rules
             for g in (*rule.groups, *rule.unless, *rule.unless_any, *rule.unless_title, *rule.title)}
    return [f"{wl.source}:{terms[0].line}: warning: group {group!r} is named by no rule, so its terms never count; "
            f"use it in a rule or remove it"
            for group, terms in wl.groups.items() if group not in named and terms]


def _repeated_spellings(wl: Watchlist) -> list[str]:
    """Spellings written twice in one term. (The same word under two terms of a group is left alone:
    lists are laid out by language, and English "front" next to German "Front" is how an admin sees
    that both languages are covered.)"""
    out = []
    for term in (*(t for terms in wl.groups.values() for t in terms), *wl.exclude):
        seen: dict[str, str] = {}
        for spelling in term.spellings:
            key = spelling if term.mode in ("acronym", "regex") else spelling.casefold()
            if key in seen:
                how = "" if seen[key] == spelling else f" (as {seen[key]!r}: case does not count in {term.mode} mode)"
                out.append(f"{wl.source}:{term.line}: warning: {spelling!r} is listed twice in this term{how}; "
                           f"one can go")
            seen.setdefault(key, spelling)
    return out


def _excluded_spellings(wl: Watchlist) -> list[str]:
    """Group spellings that `exclude:` also lists: every item that has them is vetoed, so they never count."""
    def key(spelling: str) -> str:
        return fold(clean(spelling))

    excluded = {key(sp): t.line for t in wl.exclude if t.mode != "regex" for sp in t.spellings}
    return [f"{wl.source}:{term.line}: warning: {spelling!r} is also in exclude: (line {excluded[key(spelling)]}), so "
            f"every item that has it is vetoed and it never counts; take it out of one of them"
            for group, terms in wl.groups.items() for term in terms if term.mode != "regex"
            for spelling in term.spellings if key(spelling) in excluded]


def _common_words_taken(stem_: str) -> list[str]:
    """The function words (text.FUNCTION_WORDS) a one-word fuzzy spelling's stem would match, long stems'
    one-slip tolerance aside."""
    return [w for w, f in _folded_function_words() if f.startswith(stem_) and _word_score(stem_, f, 100.0, False)]


@functools.cache
def _folded_function_words() -> tuple[tuple[str, str], ...]:
    return tuple((w, fold(clean(w))) for w in FUNCTION_WORDS)
