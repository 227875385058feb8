"""Item identity and story folding. Pure: no I/O, no clock.

Exact duplicates: an item is the same as one seen before when its guid (per feed) or its canonical
link was seen. Canonical links drop what does not name the article (tracking parameters, fragments,
scheme, `www.`/`m.`/`amp.` hosts, AMP paths, trailing slashes), so copies of one article carried in
two feeds of one outlet, or re-published with a new tracking suffix, are recognised.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import re
import sys
import threading
from array import array
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from difflib import SequenceMatcher
from email.utils import parsedate_to_datetime
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from bot.models import MAX_SUMMARY, MAX_TITLE, Item
from bot.text import FUNCTION_WORDS, fold_chars, fold_word, lead, shorten, words

_TRACKING_PREFIXES = ("utm_", "mtm_", "pk_", "at_", "wt_", "ga_", "hsa_", "oly_")
_TRACKING = frozenset(
    {
        "fbclid", "gclid", "dclid", "gclsrc", "msclkid", "yclid", "mc_cid", "mc_eid", "igshid",
        "ref", "ref_src", "ref_url", "referrer", "source", "src", "cmpid", "cmp", "campaign",
        "icid", "ncid", "ocid", "ito", "xtor", "wt_mc", "wtmc", "feature", "share", "s_cid",
        "rss", "output", "ns_mchannel", "ns_source", "ns_campaign", "ns_linkname", "ns_fee",
        "_ga", "_gl", "spm", "sr_share", "smid", "partner", "via", "amp", "outputtype",
        "maca",  # Deutsche Welle: one value per feed on every link (SOURCES.md in ../shared/feeds/real)
    }
)
_HOST_PREFIXES = ("www.", "m.", "mobile.", "amp.")
_AMP_PATH = re.compile(r"(/amp)(?=/|$)|(\.amp)(?=\.html?$|$)|(/amp\.html?)$", re.IGNORECASE)


_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~"  # reserved characters and escapes stay as they are


def _escapes(part: str) -> str:
    """One spelling per character (RFC 3986 section 6.2.2): non-ASCII and spaces escaped as UTF-8,
    escapes in upper case, escaped unreserved characters (%7E, %2D) unescaped."""
    part = quote(part, safe=_URL_SAFE)

    def one(m: re.Match[str]) -> str:
        ch = chr(int(m.group(1), 16))
        return ch if ch in _UNRESERVED else "%" + m.group(1).upper()

    return _ESCAPE.sub(one, part)


def canonical_link(url: str) -> str:
    """Normalise an article URL for identity; the original stays the one shown to readers.

    Never raises: a link Python cannot parse (a bad port, an unclosed IPv6 bracket) is its own identity,
    as written, and the rest of the feed goes on."""
    url = url.strip()
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        return url
    host = (parts.hostname or "").rstrip(".")
    if not host.isascii():
        with contextlib.suppress(UnicodeError):  # (a label too long for IDNA stays as written)
            host = host.encode("idna").decode("ascii")  # münchen.de and xn--mnchen-3ya.de are one host
    host = host.lower()
    for prefix in _HOST_PREFIXES:
        if host.startswith(prefix) and host.count(".") >= 2:
            host = host[len(prefix) :]
            break
    if ":" in host:
        host = f"[{host}]"  # IPv6
    netloc = host if port in (None, 80, 443) else f"{host}:{port}"
    path = _AMP_PATH.sub("", _escapes(parts.path)) or "/"
    path = re.sub(r"/{2,}", "/", path)
    if len(path) > 1:
        path = path.rstrip("/")
    # surrogateescape: a value that is not UTF-8 (K%E4se) comes back as it was, not as U+FFFD (K%F6se would
    # then be the same link)
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True, errors="surrogateescape")
        if not (k.lower() in _TRACKING or k.lower().startswith(_TRACKING_PREFIXES))
    ]
    query.sort()
    # A fragment names a place on the page, except in single-page sites that route by it (`#!/news/4711`,
    # `#/story/77`): there it names the article.
    fragment = _escapes(parts.fragment) if parts.fragment.startswith(("!", "/")) else ""
    return urlunsplit(("https", netloc, path, urlencode(query, errors="surrogateescape"), fragment))


def _digest(*parts: str) -> str:
    return hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()[:20]


def identity_keys(feed_id: str, guid: str, canonical: str, title: str, identity: str = "auto") -> list[str]:
    """Keys under which an item is remembered as seen; any one already seen makes it a duplicate.

    `identity` (per feed, from feeds.yaml): auto = guid and link; guid or link alone for publishers
    whose other field is broken; title_link for feeds that reuse guids and links.
    """
    keys: list[str] = []
    if identity == "title_link":
        return [f"t:{feed_id}:{_digest(title.casefold(), canonical)}"]
    if identity in ("auto", "guid") and guid:
        keys.append(f"g:{feed_id}:{_digest(guid)}")
    if identity in ("auto", "link") and canonical:
        keys.append(f"l:{_digest(canonical)}")
    if not keys:
        keys.append(f"t:{feed_id}:{_digest(title.casefold(), canonical)}")
    return keys


# --------------------------------------------------------------------------- near duplicates
#
# Two items report the same story when their informative words overlap enough: words are folded
# and stemmed (so inflection and transliteration do not count as differences), words that occur in
# very many recent items carry no weight, and rare shared words (names, places, numbers) carry the
# most (IDF weighting). Candidates come from an inverted index of those words, so a check touches
# only items that share a rare word, never all pairs. Comparison stays inside one language and a
# time window. The threshold is set for precision first: a wrong merge hides news, a missed fold
# only repeats it.

_POSTING_BUDGET = 200  # the item's words are looked up rarest first until this many postings were read
_CANDIDATES = 8  # most-overlapping earlier items that are compared in full
_RARE = 150  # words in fewer recent items than this nominate candidates; postings are kept for those
_MIN_WORD = 3
_MIN_SHARED = 2  # candidates must share at least this many informative words
SIMILARITY_THRESHOLD = 0.44  # bench/eval_dedup.py: precision first (see BENCHMARKS.md)
# Words of a new item that no indexed item has mark what is new about it, but a rewrite brings many of
# its own. At full weight they cost recall on the duplicate corpus; at zero, a small index merges
# different events with the same actors (tests/test_e2e.py's casualty report). Half keeps both.
_UNSEEN_WEIGHT = 0.5
COPY_OVERLAP = 0.5  # share of the shorter item's word weight found in the other: a copy (see _similarity)
COPY_MIN_WORDS = 8  # ... when the shorter item says enough for that share to mean something
# ... and when some of the new item's first sentence is in the other: two different reports that end on the
# same background sentence share none of it (0.0 in tests/test_dedup.py's cases), while on the matching
# corpus the copies folded by the rule share 0.34 or more of it (two share less, 0.06 and 0.08, and no longer fold).
COPY_LEAD = 0.25
# Headlines with different figures (3,000 casualties vs 1,000, the second bridge vs the third) report
# different things: they fold only when the rest is nearly identical (an agency copy with a typo).
FIGURES_THRESHOLD = 0.6
_NUMBER = re.compile(r"\d+(?:[.,\u202f\u00a0 ]\d{3})*")

_STEMS: dict[str, str] = {}  # folded word -> stem; bounded below (news vocabularies are Zipfian)

# Function words say nothing about which story an item reports. A big index learns that from document
# frequency, but a small one (the first hours after start, a deployment with a few feeds) would rank
# "than" or "über" as rare and let them pick the candidates and dominate the weights.
_STOP = frozenset(fold_word(fold_chars(w)) for w in FUNCTION_WORDS)


def _stems(text: str) -> set[str]:
    from bot.match import stem  # local import: match imports config, keep dedup light

    out = set()
    for raw in words(fold_chars(text)):
        s = _STEMS.get(raw)
        if s is None:
            w = fold_word(raw)
            s = w if w.isdigit() else "" if w in _STOP or len(w) < _MIN_WORD else stem(w)
            if len(_STEMS) > 200_000:
                _STEMS.clear()
            _STEMS[raw] = s
        if s:
            out.add(s)
    return out


# Spelled-out small numbers and ordinals (German, English), so "second bridge" and "third bridge" differ
# and "zwei Soldaten" agrees with "2 soldiers". Not "first"/"erste": mostly "for the first time".
_CARDINALS_EN = "one two three four five six seven eight nine ten"
_ORDINALS_EN = "second third fourth fifth sixth seventh eighth ninth tenth"
_CARDINALS_DE = "eins zwei drei vier fuenf sechs sieben acht neun zehn"
_ORDINALS_DE = "zweit dritt viert fuenft sechst siebt acht neunt zehnt"
_NUMBER_WORDS = {
    **{w: str(i) for i, w in enumerate(_CARDINALS_EN.split(), 1)},
    **{w: str(i) for i, w in enumerate(_ORDINALS_EN.split(), 2)},
    **{w: str(i) for i, w in enumerate(_CARDINALS_DE.split(), 1)},
    **{w + e: str(i) for i, w in enumerate(_ORDINALS_DE.split(), 2) for e in ("e", "en", "er", "es", "em")},
}


def title_numbers(title: str) -> frozenset[str]:
    """The figures in a headline: digits (thousands separators removed: 1.500 = 1,500 = 1500) and small
    numbers spelled out. Two headlines with figures and none in common report different things."""
    found = {re.sub(r"\D", "", n) for n in _NUMBER.findall(title)}
    lowered = fold_chars(title)
    found.update(_NUMBER_WORDS[w] for w in words(lowered) if w in _NUMBER_WORDS)
    return frozenset(found)


def item_words(title: str, summary: str) -> tuple[frozenset[str], frozenset[str]]:
    """(all comparable words, title words) of an item: folded, stemmed, short words dropped."""
    title_words = _stems(title)
    return frozenset(title_words | _stems(summary)), frozenset(title_words)


def title_tokens(title: str) -> tuple[str, ...]:
    """A headline's folded words in order, short ones included (Xi, EU, UN name actors)."""
    return tuple(fold_word(w) for w in words(fold_chars(title)))


_SWAP_MAX = 2  # words on each side of the one difference between two headlines that is an actor swap


def actor_swap(a: tuple[str, ...], b: tuple[str, ...], a_has: Callable[[str], bool],
               b_has: Callable[[str], bool]) -> bool:
    """Two headlines identical but for one or two words on each side, at the same place, where neither
    item mentions the other's words (`a_has`/`b_has`: does that item contain this stem): a template
    headline about someone or something else ("Xi congratulates Kim" / "Medvedev congratulates Kim",
    "sends more artillery" / "sends 3,000 more soldiers"), never a copy. A copy that says "troops" for
    "soldiers" still names the troops in its teaser. Besides the swap, one headline may carry a rubric
    or a source of up to two words the other lacks ("Geheimdienst: ..."). Figures alone are left to
    `required`: a swap needs a word on each side."""
    ops = [op for op in SequenceMatcher(None, a, b, autojunk=False).get_opcodes() if op[0] != "equal"]
    swaps = [op for op in ops if op[0] == "replace"]
    extra = [op for op in ops if op[0] != "replace"]
    if len(swaps) != 1 or len(extra) > 1 or any(max(i2 - i1, j2 - j1) > _SWAP_MAX for _, i1, i2, j1, j2 in extra):
        return False
    _, i1, i2, j1, j2 = swaps[0]
    if i2 - i1 > _SWAP_MAX or j2 - j1 > _SWAP_MAX or len(a) - (i2 - i1) - sum(i2 - i1 for _, i1, i2, _, _ in extra) < 2:
        return False
    old = tuple(w for w in a[i1:i2] if not w.isdigit() and w not in _NUMBER_WORDS)
    new = tuple(w for w in b[j1:j2] if not w.isdigit() and w not in _NUMBER_WORDS)
    if not old or not new:
        return False

    def absent(ws: tuple[str, ...], other_tokens: tuple[str, ...], other_has: Callable[[str], bool]) -> bool:
        return not any(w in other_tokens or any(other_has(st) for st in _stems(w)) for w in ws)

    return absent(old, b, b_has) and absent(new, a, a_has)


def _own_words(headline_stems: Iterable[str], other_has: Callable[[str], bool]) -> bool:
    """Does a headline (its stems) name someone or something, not a figure, that the other item never
    mentions? With other figures in each headline, that is another report in the same template ("X nennt
    Zahl 288 und Ort Y" / "Z nennt Zahl 341 und Ort W"), not a copy."""
    return any(not st.isdigit() and st not in _NUMBER_WORDS and not other_has(st) for st in headline_stems)


# Words that announce more of the same ("drei weitere Dörfer", "another strike", "ещё три села"): a
# headline with one reports the next event, not a copy of an earlier headline without it. ("Again" words
# are left out: outlets put "again without power" on the same outage.) Korean 추가 ("additional") counts only
# beside a figure ("마을 2곳 추가 탈환", two more villages retaken): alone, Korean copies use it for
# additional details of the same story ("추가 첩보 분석 중"). (Two syllables are below the index's shortest word, so
# for 추가 only the earlier headline is checked, not its teaser: it errs towards a second alert.)
_FOLLOW_UP = frozenset(title_tokens("weitere weiteren weiterer weiteres further another ещё"))
_FOLLOW_UP_WITH_FIGURE = frozenset(title_tokens("추가 추가로"))
_ANY_FOLLOW_UP = _FOLLOW_UP | _FOLLOW_UP_WITH_FIGURE


def follow_up(new: tuple[str, ...], old: tuple[str, ...], old_has: Callable[[str], bool],
              figures: bool = False) -> bool:
    """Does the later headline announce more of the same where the earlier item (headline or teaser:
    `old_has`, does it contain this stem) says nothing of the kind? `figures`: the later headline has one."""
    marks = [w for w in new if w in _FOLLOW_UP or (figures and w in _FOLLOW_UP_WITH_FIGURE)]
    return bool(marks) and not any(w in _ANY_FOLLOW_UP for w in old) and not any(
        old_has(st) for w in marks for st in _stems(w))


# What happened, in classes whose members report different events: a copy keeps the event, whatever its
# wording, so two items where each names an event of a contrasting class the other never mentions are two
# stories ("sends 3,000 troops" / "pulls 3,000 troops out", "captured" / "killed", "attack on Sudzha" /
# "recapture of Sudzha"). A withdrawal or a rejection in one headline that the other item never mentions
# is a reversal or a reaction, not a copy. Actors likewise: each headline naming a leader the other item
# never mentions ("Putin signs law ratifying pact" / "Kim Jong Un signs decree ratifying pact"). Word
# lists: `*` marks a prefix; all are compared after the index's folding and stemming. Korean words are
# shorter than the index keeps.
_EVENTS = {
    "deploy": "schickt* schicken schickte* geschickt entsend* entsandt send sends sent deploy* dispatch* отправ* "
              "направ* перебро* перебрас* відправ* перекин* перекид*",
    "withdraw": "abgezog* abzieh* abzug rückzug* zurückgezog* zurückzieh* withdr* pull pulls pulled вывести "
                "выводит* выводят* вывел* выведен* выведут отвод отвода отводит* отводят* "
                "отвел* вивести виводить* виводять* вивед* вивел* вивів* відвод* відвел* відвели*",
    "capture": "gefangen* festgenommen captur* плен плена пленн* пленен* пленил* полон*",
    "killed": "getötet tötet töten tot tote toten gefallen gefallene starb gestorben stirbt killed kill kills "
              "dead died погиб* убит* убил* умер* скончал* загин* загибл* вбит* вбил* помер*",
    "attack": "angriff* angegriffen abgewehrt abwehr* attack* assault* repel* атак* штурм* отразил* отражен*",
    "recapture": "rückerober* zurückerober* zurückgeeroberte recaptur* retak* retook освобо* звільн*",
    "reject": "lehnt abgelehnt ablehn* zurückgewiesen dementi* fake reject* refus* deny denies denied denial "
              "dismiss* отверг* отклон* отрица* опроверг* фейк* відкин* відхил* заперечу* спростову*",
}
# Feeds in other languages (a foreign desk's own lists): their words count only for items of that language
# ("retire" is French for withdraws, and English for something else).
_EVENTS_BY_LANG = {
    "fr": {"deploy": "envoie envoient envoi* envoy* deploie deploye deploient",
           "withdraw": "retire retirent retirer retrait retraits rapatri*", "capture": "prisonnier*",
           "killed": "tues tuee tuees morts morte mortes decede*",
           "attack": "attaque attaques attaquent attaqu* assaut*",
           "recapture": "repris* reprend* reconqu* libere liberes liberee liberation",
           "reject": "rejet* dement dementent nient"},
    "es": {"deploy": "envia envian enviad* envio despleg* desplieg*",
           "withdraw": "retira retiran retirada retiro repliega repliegan repliegue", "capture": "prisioner*",
           "killed": "muert* mueren murieron mato matad* fallec*", "attack": "ataque ataques atac*",
           "recapture": "reconquist* recuper* liberad*", "reject": "rechaz* niega* desmient*"},
    "it": {"deploy": "invia inviat* inviano dispiega* schier*", "withdraw": "ritira ritirano ritirato ritiro",
           "capture": "cattur* prigionier*", "killed": "uccis* morto morti", "attack": "attacc*",
           "recapture": "riconquist* ripres* liberat*", "reject": "respin* smentit* smentisc*"},
    "tr": {"deploy": "gonder* konuslandir*", "withdraw": "cekil* cekti", "capture": "esir* yakaland*",
           "killed": "olduruld*", "attack": "saldir*", "recapture": "kurtar*", "reject": "reddet* yalanla*"},
    "ar": {"deploy": "ارسل* ترسل* يرسل* ينشر تنشر", "withdraw": "تسحب* يسحب* سحب* انسحب* انسحاب* ينسحب* تنسحب*",
           "capture": "اسر اسرى اسير* ياسر تاسر", "killed": "قتل* مقتل*", "attack": "هجوم* يهاجم* تهاجم* هاجم*",
           "recapture": "استعاد* تستعيد* يستعيد* حرر* تحرير*", "reject": "نفى تنفي* ينفي* رفض* يرفض* ترفض*"},
}
_CONTRASTS = (("deploy", "withdraw"), ("capture", "killed"), ("attack", "recapture"))
_ONE_SIDED = frozenset({"withdraw", "reject"})
_ACTORS = {
    # the Kremlin is Putin's office: a copy says one for the other
    "putin": "putin путин* путін* kreml* кремл*", "kim": "kim ким кім",
    "zelensky": "selensk* zelensk* зеленск* зеленськ*", "lavrov": "lawrow lavrov лавров*",
    "shoigu": "schoigu shoigu шойгу",
    "belousov": "beloussow belousov белоусов* білоусов*", "trump": "trump трамп*", "biden": "biden байден*",
}


def _lexicon(classes: Mapping[str, str]) -> tuple[dict[str, str], tuple[tuple[str, str], ...]]:
    """(exact stem -> class, (stem prefix, class) pairs) of a word-class table."""
    exact: dict[str, str] = {}
    prefixes: list[tuple[str, str]] = []
    for name, spelled in classes.items():
        for w in spelled.split():
            if w.endswith("*"):
                prefixes.append((fold_word(fold_chars(w[:-1])), name))
            else:
                exact.update((st, name) for st in _stems(w))
    return exact, tuple(prefixes)


# Words too ambiguous to split two items (Russian "вывод": withdrawal, or conclusion), yet enough to show
# that an item mentions the event: in the other item they keep a headline's word from splitting a copy.
_MENTIONS = {"withdraw": "вывод* вивод* left leave leaves leaving verlassen verlies* verließ* покинул* покинут* "
                         "залишил* залишат*"}
_ACTOR_LEXICON = _lexicon(_ACTORS)
_EVERY_LANGUAGE = {k: " ".join(words[k] for words in _EVENTS_BY_LANG.values() if k in words) for k in _EVENTS}
_LANG_LEXICONS = {  # language -> (event lexicon, mention lexicon): the base words and that language's; "" (any
    # other language) the base words; "*" (no known language) all of them: they only keep two items apart
    lang: (_lexicon({k: _EVENTS[k] + " " + more.get(k, "") for k in _EVENTS}),
           _lexicon({k: _EVENTS[k] + " " + _MENTIONS.get(k, "") + " " + more.get(k, "") for k in _EVENTS}))
    for lang, more in (("", {}), *_EVENTS_BY_LANG.items(), ("*", _EVERY_LANGUAGE))
}
_LANG_CODES = {"fra": "fr", "fre": "fr", "spa": "es", "ita": "it", "tur": "tr", "ara": "ar", "deu": "de", "ger": "de",
               "eng": "en", "rus": "ru", "ukr": "uk", "kor": "ko"}  # ISO 639-2, as some feeds write them


def lang_key(lang: str | None) -> str:
    """The language an item is compared in: two letters, lower case (de-AT is de; ISO 639-2's spa is es)."""
    code = (lang or "").strip().lower()
    return _LANG_CODES.get(code[:3], code[:2])


def _classes(stem_: str, lexicon: tuple[dict[str, str], tuple[tuple[str, str], ...]]) -> set[str]:
    exact, prefixes = lexicon
    found = {exact[stem_]} if stem_ in exact else set()
    found.update(name for p, name in prefixes if stem_.startswith(p))
    return found


# German separable verbs put the particle at the end of the clause ("Nordkorea zieht Truppen ab", "Kreml weist
# Berichte zurück"); "zieht Truppen zusammen, Offensive ab Montag" is neither.
_CLAUSE_END = r"\s*(?:$|[,.:;!?–-])"
_SEPARABLE = (
    (re.compile(r"\b(?:zieht|ziehen|zog|zogen)\b[^,.:;!?–]*\s(?:ab|zurück)" + _CLAUSE_END, re.IGNORECASE), "withdraw"),
    (re.compile(r"\b(?:weist|weisen|wies|wiesen)\b[^,.:;!?–]*\szurück" + _CLAUSE_END, re.IGNORECASE), "reject"),
)


def headline_classes(title: str, lang: str = "") -> tuple[frozenset[str], frozenset[str]]:
    """(event classes, actors) a headline names, separable verbs included."""
    events, actors = word_classes(_stems(title), mentions=False, lang=lang)
    found = {name for pattern, name in _SEPARABLE if pattern.search(title)}
    return (events | found if found else events), actors


_NAMED: dict[tuple[str, bool, str], tuple[frozenset[str], frozenset[str]]] = {}  # (stem, mentions, lang)
_NOTHING: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())


def word_classes(stems: Iterable[str], mentions: bool = True, lang: str = "") -> tuple[frozenset[str], frozenset[str]]:
    """(event classes, actors) named by a set of stems of an item in `lang`. `mentions`: also the ambiguous
    words that show an item speaks of an event (for the other item of a pair; a headline's classes leave
    them out)."""
    lang = lang_key(lang) or "*"  # none known: every language's words (they only keep items apart)
    if lang not in _LANG_LEXICONS:
        lang = ""  # a language without words of its own: the base words
    lexicon = _LANG_LEXICONS[lang][1 if mentions else 0]
    found: list[tuple[frozenset[str], frozenset[str]]] = []
    for st in stems:
        named = _NAMED.get((st, mentions, lang))
        if named is None:
            named = (frozenset(_classes(st, lexicon)), frozenset(_classes(st, _ACTOR_LEXICON)))
            if not (named[0] or named[1]):
                named = _NOTHING
            if len(_NAMED) > 200_000:
                _NAMED.clear()
            _NAMED[(st, mentions, lang)] = named
        if named is not _NOTHING:
            found.append(named)
    return _union(found)


def _union(named: Iterable[tuple[frozenset[str], frozenset[str]]]) -> tuple[frozenset[str], frozenset[str]]:
    """The (event classes, actors) of several words together."""
    events: set[str] = set()
    actors: set[str] = set()
    for e, a in named:
        events |= e
        actors |= a
    return frozenset(events), frozenset(actors)


def events_differ(a: tuple[frozenset[str], frozenset[str]], head_a: tuple[frozenset[str], frozenset[str]],
                  b: tuple[frozenset[str], frozenset[str]], head_b: tuple[frozenset[str], frozenset[str]]) -> bool:
    """Do two items report different events? Each argument is (event classes, actors), of a whole item
    or of its headline: only what a headline says counts against the other item, since background
    sentences name other events ("units withdrawn for recovery" under a report of a village retaken).
    A copy worded with a synonym the lists lack is split (a repeat alert): precision first, since a wrong
    merge hides a story. (A shortcut "same teaser classes, same story" was tried and dropped: most teasers
    name no event, and it folded "Putin signs" / "Kim signs" again.)"""
    ev_a, ev_b = head_a[0] - b[0], head_b[0] - a[0]  # events each headline names and the other item never does
    if (ev_a | ev_b) & _ONE_SIDED:
        return True
    if any((x in ev_a and y in ev_b) or (y in ev_a and x in ev_b) for x, y in _CONTRASTS):
        return True
    return bool(head_a[1] - b[1]) and bool(head_b[1] - a[1])


def _weight(ws: Iterable[int], idf: dict[int, float], n: int, df: array[int]) -> float:
    """Summed IDF of word ids in an index of `n` items (`idf` caches it for one check)."""
    total = 0.0
    for w in ws:
        v = idf.get(w)
        if v is None:
            v = idf[w] = math.log((n + 1) / (df[w] + 0.5))
        total += v
    return total


def _share(part: set[int], other: set[int], idf: dict[int, float], n: int, df: array[int], unseen: float) -> float:
    """IDF-weighted share of `part` (plus `unseen` weight of words no indexed item has) found in `other`."""
    whole = _weight(part, idf, n, df) + unseen
    return _weight(part & other, idf, n, df) / whole if whole > 0 else 0.0


def _has_word(vocab: Mapping[str, int], ids: set[int], stem_: str) -> bool:
    return vocab.get(stem_, -1) in ids


@dataclass(slots=True)
class _Entry:
    key: Hashable  # story id (pipeline) or item id (match CLI)
    lang: str
    published: datetime
    words: array[int]  # word ids: arrays, not sets, keep the index small and out of the garbage collector
    title_words: array[int]
    numbers: str  # figures in the headline, space-separated (a str: 50 bytes, a frozenset 200+)
    title: str  # the headline as written, folded only for the actor-swap check of a candidate that clears the bar
    weights: tuple[float, float, int] | None = None  # (words, title words, index size when computed)


class StoryIndex:
    """In-memory index of recent items for near-duplicate lookup; rebuilt from the store at start.

    Thread-safe (one lock): the pipeline looks items up from a worker thread while the event loop adds.
    """

    def __init__(self, window: float = 48 * 3600.0, threshold: float = SIMILARITY_THRESHOLD) -> None:
        self.window = timedelta(seconds=window)
        self.threshold = threshold
        self._word_ids: dict[str, dict[str, int]] = {}  # lang -> stem -> word id
        self._df = array("i")  # word id -> items in the window that contain it
        self._postings: list[array[int] | None] = []  # word id -> entry ids, kept while the word is rare
        self._entries: dict[int, _Entry] = {}
        # Entries per language: word ids (and so document frequencies) are per language, and so must the
        # index size of the IDF be. Counted over all languages, a busy desk in one language made every
        # word of another look rarer, common ones most (log N grows for all), and folding looser there.
        self._per_lang: Counter[str] = Counter()
        self._next = 0
        self._order: deque[int] = deque()
        self._lock = threading.Lock()
        # word id -> (event classes, actors) for the few words the lexicons name, so an indexed entry's
        # classes come from its word ids (its text is not kept)
        self._word_classes: dict[int, tuple[frozenset[str], frozenset[str]]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def _lookup_ids(self, lang: str, ws: Iterable[str]) -> array[int]:
        ids = self._word_ids.get(lang, {})
        return array("i", sorted(i for w in ws if (i := ids.get(w)) is not None))

    def _intern_ids(self, lang: str, ws: Iterable[str]) -> array[int]:
        ids = self._word_ids.setdefault(lang, {})
        out = []
        for w in ws:
            i = ids.get(w)
            if i is None:
                i = ids[w] = len(self._df)
                self._df.append(0)
                self._postings.append(array("i"))
                named = word_classes((w,), lang=lang)
                if named[0] or named[1]:
                    self._word_classes[i] = named
            out.append(i)
        return array("i", sorted(out))

    def required(self, numbers: frozenset[str], other: frozenset[str]) -> float:
        """The similarity two items need to be one story: more when their headlines' figures differ."""
        if numbers and other and not numbers & other:
            return max(self.threshold, FIGURES_THRESHOLD)
        return self.threshold

    def nearest(self, title: str, summary: str, lang: str, published: datetime) -> Hashable | None:
        """The key of the earlier entry (same language, inside the window) that this item is a copy of:
        the one that clears `required` by the widest margin; None when none does."""
        ws, tws = item_words(title, summary)
        if not ws:
            return None
        numbers = title_numbers(title)
        lang = lang_key(lang)
        with self._lock:
            a = self._lookup_ids(lang, ws)
            ta = self._lookup_ids(lang, tws)
            # Candidates come from the item's rarest words only: a check touches a few short posting lists.
            df, postings = self._df, self._postings
            rare = sorted((df[i], i) for i in a if 0 < df[i] < _RARE)
            counts: Counter[int] = Counter()
            budget = _POSTING_BUDGET
            for n, i in rare:
                posting = postings[i]
                if posting is not None:
                    counts.update(posting)
                    budget -= n
                    if budget <= 0:
                        break
            best: Hashable | None = None
            best_margin = 0.0
            tokens: tuple[str, ...] | None = None
            idf: dict[int, float] = {}
            sa, sta = set(a), set(ta)
            n = max(self._per_lang[lang], 1)
            unseen = _UNSEEN_WEIGHT * math.log((n + 1) / 0.5)
            extra = ((len(ws) - len(a)) * unseen, (len(tws) - len(ta)) * unseen)
            lead_ids: set[int] | None = None  # the first sentence's words, looked up when a copy needs them
            mine: tuple[tuple[frozenset[str], frozenset[str]], ...] | None = None  # classes: item, headline
            lead_unseen = 0.0
            for eid, shared in counts.most_common(_CANDIDATES):
                if shared < _MIN_SHARED:
                    break
                entry = self._entries.get(eid)
                if entry is None or abs(published - entry.published) > self.window:
                    continue
                b = set(entry.words)
                sim, body = self._similarity(sa, b, sta, set(entry.title_words), idf, entry, extra)
                if body >= COPY_OVERLAP and min(len(sa), len(b)) >= COPY_MIN_WORDS:
                    # A copy: most of the shorter item's weight is in the other one (an agency text
                    # trimmed or re-headlined), its first sentence included. Different reports with the
                    # same actors rarely get there; two that end on the same background sentence ("North
                    # Korea has sent about 11,000 soldiers ...") do, but their first sentences differ.
                    if lead_ids is None:
                        lead_ws = _stems(lead(summary, 1)) if summary else set()
                        lead_ids = set(self._lookup_ids(lang, lead_ws))
                        lead_unseen = (len(lead_ws) - len(lead_ids)) * unseen
                    lead_share = _share(lead_ids, b, idf, n, df, lead_unseen) if lead_ids or lead_unseen else 1.0
                    if lead_share >= COPY_LEAD:
                        sim = max(sim, self.threshold)
                need = self.required(numbers, frozenset(entry.numbers.split()) if numbers else frozenset())
                margin = sim / max(need, 1e-9)
                if margin >= 1.0 and margin > best_margin:
                    if tokens is None:
                        tokens = title_tokens(title)
                    entry_tokens = title_tokens(entry.title)
                    entry_has = partial(_has_word, self._word_ids.get(lang, {}), b)
                    if follow_up(tokens, entry_tokens, entry_has, bool(numbers)):
                        continue
                    if actor_swap(tokens, entry_tokens, ws.__contains__, entry_has):
                        continue
                    if numbers and entry.numbers and not numbers & frozenset(entry.numbers.split()) and \
                            _own_words(tws, entry_has) and _own_words(_stems(entry.title), ws.__contains__) and \
                            _own_words(_stems(summary), entry_has):  # (the same teaser: a copy, re-headlined)
                        continue
                    if mine is None:
                        head = headline_classes(title, lang)
                        whole = word_classes(ws, lang=lang)
                        mine = ((whole[0] | head[0], whole[1]), head)
                    theirs = self._entry_classes(entry.words)
                    theirs_head = headline_classes(entry.title, lang)
                    if events_differ(mine[0], mine[1], (theirs[0] | theirs_head[0], theirs[1]), theirs_head):
                        continue
                    best, best_margin = entry.key, margin
            return best

    def _entry_classes(self, ids: Iterable[int]) -> tuple[frozenset[str], frozenset[str]]:
        return _union(named for i in ids if (named := self._word_classes.get(i)) is not None)

    def _similarity(self, a: set[int], b: set[int], ta: set[int], tb: set[int], idf: dict[int, float],
                    entry: _Entry, extra: tuple[float, float]) -> tuple[float, float]:
        """IDF-weighted (similarity, overlap): similarity = max(Jaccard, mean of overlap coefficient and
        title Jaccard); overlap = the overlap coefficient (shared weight / the lighter item's weight)."""
        inter = a & b
        if not inter:
            return 0.0, 0.0
        n = max(self._per_lang[entry.lang], 1)
        weight = partial(_weight, idf=idf, n=n, df=self._df)
        wa, wta = weight(a) + extra[0], weight(ta) + extra[1]
        # An entry's own weights change slowly with the index size: recompute when it moved 10%.
        if entry.weights is None or abs(entry.weights[2] - n) > n * 0.1:
            entry.weights = (weight(b), weight(tb), n)
        wb, wtb = entry.weights[0], entry.weights[1]
        wi = weight(inter)
        body = wi / max(min(wa, wb), 1e-9)
        jacc = wi / max(wa + wb - wi, 1e-9)
        if ta and tb:
            wti = weight(ta & tb)
            title = wti / max(wta + wtb - wti, 1e-9)
        else:
            title = 0.0
        return max(jacc, 0.5 * body + 0.5 * title), body

    def add(self, key: Hashable, title: str, summary: str, lang: str, published: datetime) -> None:
        """Remember an item under `key` (its story id)."""
        lang = lang_key(lang)
        ws, tws = item_words(title, summary)
        with self._lock:
            ids = self._intern_ids(lang, ws)
            eid = self._next
            self._next += 1
            numbers = sys.intern(" ".join(sorted(title_numbers(title))))
            self._entries[eid] = _Entry(key, lang, published, ids, self._lookup_ids(lang, tws), numbers, title)
            self._per_lang[lang] += 1
            self._order.append(eid)
            df, postings = self._df, self._postings
            for i in ids:
                df[i] += 1
                posting = postings[i]
                if posting is not None:
                    if len(posting) < _RARE:
                        posting.append(eid)
                    else:
                        postings[i] = None  # common from now on: never a candidate source again

    def expire(self, now: datetime) -> None:
        """Forget entries published before the window."""
        with self._lock:
            df = self._df
            revive: set[int] = set()
            while self._order:
                eid = self._order[0]
                entry = self._entries.get(eid)
                if entry is not None and now - entry.published <= self.window:
                    break
                self._order.popleft()
                if entry is None:
                    continue
                del self._entries[eid]
                self._per_lang[entry.lang] -= 1
                for i in entry.words:
                    df[i] -= 1
                    posting = self._postings[i]
                    if posting is not None and posting and posting[0] == eid:
                        posting.pop(0)  # entries expire oldest first, so each posting is trimmed at its head
                    elif posting is None and df[i] < _RARE:
                        revive.add(i)
            # A word common in a surge (150 recent items) lost its posting; once the surge has expired it is
            # a word like any other again. Without its posting back it never nominated a candidate for the
            # rest of the process's life, so copies folded after a restart but not before.
            if revive:
                rebuilt: dict[int, array[int]] = {i: array("i") for i in revive}
                for eid in self._order:
                    entry = self._entries.get(eid)
                    if entry is not None:
                        for i in revive.intersection(entry.words):
                            rebuilt[i].append(eid)
                for i, posting in rebuilt.items():
                    self._postings[i] = posting

    # -- the two users: the pipeline (stories) and `mediabot match` (item ids) -------------------

    def find(self, item: Item, now: datetime) -> int | None:
        """The story id an item belongs to, when it is a later copy of a recent story."""
        key = self.nearest(item.title, item.summary, item.lang, item.published)
        return int(key) if key is not None else None  # type: ignore[call-overload]

    def add_item(self, item: Item, story_id: int) -> None:
        """Remember a stored item under its story."""
        self.add(story_id, item.title, item.summary, item.lang, item.published)

    def check(self, item: Item, item_id: Any) -> Any:
        """For `mediabot match`: the earlier item id of the same story, or None; remembers this one."""
        key = self.nearest(item.title, item.summary, item.lang, item.published)
        if key is not None:
            # Later copies point at the first item of the story, so chains do not drift. Only a story's
            # first item is indexed, as in the bot: a story's own copies must not make its words look
            # common (in a small index, the twelfth copy of one story no longer folded).
            return key
        self.add(item_id, item.title, item.summary, item.lang, item.published)
        return None


RECORD_TEXT_FIELDS = ("summary", "link", "source", "lang", "published")


def record_problem(record: object) -> str | None:
    """Why a `mediabot match` input line cannot be read as an item, or None."""
    if not isinstance(record, dict):
        return "not a JSON object"
    if record.get("id") is None or not isinstance(record.get("title"), str):
        others = [f"`{k}`" for k in record if k not in ("id", "title", *RECORD_TEXT_FIELDS)]
        return "`id` and `title` (text) are required" + (
            f"; this line has {', '.join(others[:5])}, which `match` does not read (it reads id, title, "
            f"{', '.join(RECORD_TEXT_FIELDS)})" if others else "")
    if isinstance(record["id"], bool) or not isinstance(record["id"], (str, int)) or record["id"] == "":
        return "`id` must be text or a whole number"
    wrong = [k for k in RECORD_TEXT_FIELDS if record.get(k) is not None and not isinstance(record[k], str)]
    if wrong:
        return f"{', '.join(f'`{k}`' for k in wrong)} must be text"
    raw = record.get("published")
    if raw and parse_published(raw) is None:
        return f"`published` {raw!r} is not a date (ISO 8601 such as 2025-06-19T08:00:00Z, or RFC 822 as in RSS)"
    return None


def parse_published(raw: str) -> datetime | None:
    """ISO 8601 (Atom, JSON) or RFC 822 (RSS) -> an aware datetime (UTC when no zone is given), else None."""
    raw = raw.strip()
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def item_from_record(record: Mapping[str, Any], undated: datetime | None = None) -> Item:
    """A `mediabot match` input line -> Item (only id and title are required; see `record_problem`).
    A record without `published` is dated `undated` (the stream passes the date of the record before it)."""
    raw = record.get("published")
    published = parse_published(raw) if isinstance(raw, str) and raw else None
    link = str(record.get("link") or "")
    canon = canonical_link(link)
    return Item(
        key=str(record.get("id")), feed_id=str(record.get("source") or ""),
        title=shorten(str(record.get("title") or ""), MAX_TITLE),
        summary=str(record.get("summary") or "")[:MAX_SUMMARY],
        link=link, canonical_link=canon, guid="",
        published=published or undated or datetime(1970, 1, 1, tzinfo=UTC), lang=str(record.get("lang") or ""),
        source=str(record.get("source") or ""), dated=published is not None,
    )
