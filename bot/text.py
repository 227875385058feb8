"""Text helpers shared by parsing, matching and dedup: HTML to text, folding, tokens.

Contains no business logic: what counts as a match or a duplicate lives in match.py and dedup.py.
"""

from __future__ import annotations

import html
import re
import unicodedata

_SCRIPT_STYLE = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_BLOCK_TAG = re.compile(r"<\s*(br|/p|/div|/li|/h[1-6]|/tr)\b[^>]*>", re.IGNORECASE)
# A tag starts with a letter, "/", "!" or "?" after "<": "Verluste <10% und >5%", "3 < 4" and "Kim<->Putin" are text.
_TAG = re.compile(r"<(?:/?[A-Za-z]|[!?])[^>]{0,2000}>")
_WS = re.compile(r"\s+")
# Combining marks are not \w, yet they sit inside words: Arabic vowel signs and shadda (روسيّا), Hebrew
# points, and the dot that lower-casing Turkish İ leaves (İstanbul -> i̇stanbul). Split at them, a word
# fell apart ("i", "stanbul"); fold_word drops them.
MARKS = "\u0300-\u036f\u0591-\u05bd\u05bf\u05c1\u05c2\u05c4\u05c5\u05c7\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed"
_WORD = re.compile(f"[\\w{MARKS}]+")


def html_to_text(value: str) -> str:
    """Strip markup to plain text: tags removed, entities decoded, whitespace folded."""
    if not value:
        return ""
    if "<" in value:
        value = _SCRIPT_STYLE.sub(" ", value)
        value = _BLOCK_TAG.sub(" ", value)
        value = _TAG.sub("", value)
    if "&" in value:
        # Twice: feeds often double-escape ("&amp;amp;", "&lt;b&gt;").
        value = html.unescape(html.unescape(value))
        if "<" in value:
            value = _TAG.sub("", value)
    return _WS.sub(" ", value).strip()


def squash(text: str) -> str:
    """Text compared as a reader would: runs of whitespace as one space, case folded."""
    return " ".join(text.split()).casefold()


def shorten(text: str, limit: int) -> str:
    """Cut `text` at a word boundary to at most `limit` characters, adding an ellipsis when cut."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit * 0.6:
        cut = cut[:space]
    return cut.rstrip(" ,;:.-–—") + "…"


# Folding: one key per spelling family, applied the same way to watchlist terms and to item
# text. German umlauts and their ae/oe/ue spellings, ß/ss, diacritics, Ukrainian letters onto
# their Russian neighbours and the soft sign dropped (Курськ/Курск), and a few transliteration
# habits (Schoigu/Shoigu, Lawrow/Lavrov, Pjöngjang/Pyongyang, doubled letters).
_CHAR_PAIRS = (  # character -> replacement, applied with str.replace (see fold_chars)
    ("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("ß", "ss"), ("ẞ", "ss"),
    ("ё", "е"), ("й", "и"), ("і", "и"), ("ї", "и"), ("є", "е"), ("ґ", "г"), ("ы", "и"), ("ь", ""), ("ъ", ""),
    ("'", ""), ("’", ""), ("ʼ", ""), ("`", ""), ("´", ""),
    ("\u00ad", ""), ("\u200b", ""), ("\u200c", ""), ("\u200d", ""), ("\u2060", ""), ("\ufeff", ""),
)
_LATIN_SEQ = (
    ("tsch", "ch"), ("sch", "sh"), ("zh", "sh"), ("ae", "a"), ("oe", "o"), ("ue", "u"), ("ph", "f"), ("ck", "k"),
)
_HAS_DOUBLE = re.compile(r"([a-z])\1")
_HAS_LATIN_SEQ_OR_DOUBLE = re.compile("|".join(old for old, _ in _LATIN_SEQ) + r"|([a-z])\1")
_NEEDS_NFD = re.compile(r"[\u00c0-\u024f\u0300-\u036f\u1e00-\u1eff]")
_COMBINING = re.compile(r"[\u0300-\u036f]")
# Characters clean() drops: soft hyphen, zero-width spaces and joiners, BOM, apostrophes (so "Kim's" is one word).
_APOSTROPHES = "'’ʼ`´"
DROPPED_MARKS = "\u00ad\u200b\u200c\u200d\u2060\ufeff" + _APOSTROPHES
_INVISIBLE = re.compile(f"[{DROPPED_MARKS}]")
# French and Italian elision: the article or particle before an apostrophe is a word of its own, so
# "l'Iran", "d’Ukraine", "qu'il", "dell'Ucraina" read "l Iran", "d Ukraine", ... and a term "Iran" or
# "Ukraine" takes them. Only these Latin particles, as a whole word before the apostrophe: every other
# apostrophe still joins ("Kim's", "don't", "O'Brien", "rock'n'roll", Ukrainian "В'ячеслав").
_ELIDED = "l|d|j|m|n|s|t|c|qu|jusqu|lorsqu|puisqu|quelqu|presqu|quoiqu|dell|all|dall|nell|sull|quell|un"
# Elision comes before a vowel or h only, so an English "'s", "'t", "'re" is dropped by one set test.
_VOWEL_OR_H = "aeiouyhàâäéèêëìíîïòóôöùúûüœæAEIOUYHÀÂÄÉÈÊËÌÍÎÏÒÓÔÖÙÚÛÜŒÆ"
ELIDED_PARTICLE = f"(?i:{_ELIDED})(?=[{_APOSTROPHES}][{_VOWEL_OR_H}])"  # for a left-to-right scan of written words
# not inside a word, nor after one and an apostrophe (rock'n'roll); after an opening quote it is ('L'Iran …')
_ELIDED_AT_END = re.compile(f"(?<!\\w)(?<!\\w[{_APOSTROPHES}])(?:{_ELIDED})\\Z", re.IGNORECASE)
_PARTICLE_ENDS = frozenset("ldjmnstcuLDJMNSTCU")
_ELISION_NEXT = frozenset(_VOWEL_OR_H)


def _split_elisions(text: str, marks: str = _APOSTROPHES) -> str:
    """`text` with the apostrophe after an elided particle replaced by a space (l'Iran -> l Iran).

    A loop over the apostrophes (str.find runs at memchr speed), most of them English ("Kim's", "don't",
    "'re") and dropped by the first test, a vowel after the apostrophe: a regex scan of the whole text
    cost 1.5-18 µs per item with an apostrophe."""
    cuts = []
    for mark in marks:
        at = text.find(mark)
        while at >= 0:
            if (text[at + 1 : at + 2] in _ELISION_NEXT and text[at - 1 : at] in _PARTICLE_ENDS
                    and _ELIDED_AT_END.search(text, max(0, at - 6), at)):
                cuts.append(at)
            at = text.find(mark, at + 1)
    if not cuts:
        return text
    cuts.sort()
    return " ".join(text[i + 1 : j] for i, j in zip([-1, *cuts], [*cuts, len(text)], strict=True))


def fold_chars(text: str) -> str:
    """The cheap, whole-text part of fold(): NFKC, case folding and the character map (which also
    drops the invisible characters clean() removes, so word boundaries agree with clean())."""
    if text.isascii():  # the common case: skip NFKC and the (slow, multi-character) translation table
        return _without_ascii_marks(text.lower())
    text = _nfkc(text).casefold()
    # A few `in` scans and rare replaces beat str.translate's per-character table lookup ~10x here.
    elided = False
    for old, new in _CHAR_PAIRS:
        if old in text:
            if not elided and old in _APOSTROPHES:  # the first apostrophe found: split elisions, once
                text = _split_elisions(text)
                elided = True
            text = text.replace(old, new)
    return text


# Per word, outside Latin and Cyrillic: Turkish dotless ı as i (KIRIM, Kırım); Arabic and Persian letter
# variants as one (أ إ آ ٱ as ا; Persian ی as ي, and a final alef maksura after three letters, not in على
# "on", which is not the name علي; Persian ک as ك; ة as ه); the tatweel
# that stretches headlines (إيـران) and Arabic and Hebrew vowel points dropped.
_SCRIPT_MAP = str.maketrans(
    {"ı": "i", "أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا", "ی": "ي", "ک": "ك", "ة": "ه", "ـ": None}
    | {chr(c): None for c in (*range(0x0591, 0x05C8), *range(0x0610, 0x061B), *range(0x064B, 0x0660), 0x0670,
                              *range(0x06D6, 0x06EE)) if unicodedata.category(chr(c)) == "Mn"})
_NEEDS_SCRIPT_MAP = re.compile(f"[{re.escape(''.join(map(chr, _SCRIPT_MAP)))}ى]")  # its keys, and alef maksura


def fold_word(word: str) -> str:
    """The per-word part of fold(), applied to one word that already went through fold_chars().

    Split off so a matcher can cache it per distinct word instead of running it over every text.
    """
    if "j" in word or "w" in word:
        word = word.replace("j", "y").replace("w", "v")
    if not word.isascii():
        if _NEEDS_SCRIPT_MAP.search(word):
            word = word.translate(_SCRIPT_MAP)
            if word.endswith("ى") and len(word) > 3:  # Egyptian spelling of a final yeh (زيلينسكى); not على, إلى
                word = word[:-1] + "ي"
        if _NEEDS_NFD.search(word):
            # Strip remaining diacritics (é -> e). Hangul jamo are not combining marks, so NFC rebuilds them.
            word = unicodedata.normalize("NFC", _COMBINING.sub("", unicodedata.normalize("NFD", word)))
    if _HAS_LATIN_SEQ_OR_DOUBLE.search(word):  # one scan for the common word with neither
        for old, new in _LATIN_SEQ:
            if old in word:
                word = word.replace(old, new)
        double = _HAS_DOUBLE.search(word)
        while double:  # str.replace per doubled letter: a regex sub with a template costs ~1 us a word
            letter = double.group(1)
            word = word.replace(letter + letter, letter)
            double = _HAS_DOUBLE.search(word)
    return word


def fold(text: str) -> str:
    """Map text to its matching key: NFKC, case-folded, spelling variants unified (fold_chars on the
    whole text, then fold_word on each word: the same key the matcher builds word by word)."""
    return _WORD.sub(lambda m: fold_word(m.group(0)), fold_chars(text))


def clean(text: str) -> str:
    """NFKC and invisible characters removed; word boundaries are then the same as in fold(text)."""
    if text.isascii():  # NFKC leaves ASCII alone
        return _without_ascii_marks(text)
    return _INVISIBLE.sub("", _split_elisions(_nfkc(text)))


def _nfkc(text: str) -> str:
    """NFKC, skipped for text that already is (most feed text; the check is ~3x cheaper)."""
    return text if unicodedata.is_normalized("NFKC", text) else unicodedata.normalize("NFKC", text)


def _without_ascii_marks(text: str) -> str:
    """ASCII text without the two ASCII characters that fold and clean drop (' and `, as in Kim's), an
    elision split first (l'Iran)."""
    if "'" in text or "`" in text:
        return _split_elisions(text, "'`").replace("'", "").replace("`", "")
    return text


_ASCII_SEPARATORS = bytes(b if chr(b).isalnum() or b == ord("_") else ord(" ") for b in range(256))


# Punctuation and spaces outside ASCII that news text carries (German quotes and dashes): replaced by a
# space, most German and English text becomes ASCII and takes the fast path. They are never part of a
# word, so the words are the same.
_NON_ASCII_BREAKS = ("–", "—", "„", "“", "”", "‚", "‘", "«", "»", "‹", "›", "…", "·", "•", "€", "£", "°", "§",
                     "\u00a0", "\u202f")


def fast_words(text: str) -> list[str]:
    """words(), faster on pure-ASCII text (a byte-table translate and split instead of a regex scan)."""
    if not text.isascii():
        for mark in _NON_ASCII_BREAKS:
            if mark in text:
                text = text.replace(mark, " ")
        if not text.isascii():
            return _WORD.findall(text)
    return text.encode("ascii").translate(_ASCII_SEPARATORS).decode("ascii").split()  # bytes: a plain table


# A sentence ends at . ! ? ؟ or … followed by a space and a capital letter, a digit, an opening quote or
# Hangul (or a letter of a script without capitals); not after a single letter, a number (German ordinals)
# or a common abbreviation (U.S., Dr., Oct.). A Chinese or Japanese full stop needs no space after it.
_SENTENCE_END = re.compile(r"[.!?…؟][\"'»“”’)]*\s+(?=[\"'„“«(\[]?[^\W\d_a-zа-яё]|\d|[\uac00-\ud7a3])"
                           r"|[。！？](?:[」』）”]+(?!と)|(?![」』）”]))\s*(?=\S)")  # 。」と: a quotation inside it
_ABBREVIATION_LIST = ("dr prof nr st mr mrs ms gen lt col sgt vs no bzw ca mio mrd ggf vgl inkl jan feb mar apr jun "
                      "jul aug sep sept oct nov dec okt dez sen rep gov usw etc abs art ст г гг им тыс млн млрд")
_ABBREVIATIONS = frozenset(_ABBREVIATION_LIST.split())


def lead(text: str, sentences: int = 2) -> str:
    """The first `sentences` sentences of a teaser: where news states its subject. Later sentences
    tend to carry background ("Pyongyang has grown closer to Moscow"), which a watchlist may ignore."""
    count = 0
    for m in _SENTENCE_END.finditer(text):
        end = m.start()
        last = text[text.rfind(" ", 0, end) + 1 : end].rsplit(".", 1)[-1].lower()  # the word before the stop
        if len(last) <= 1 or last.isdigit() or last in _ABBREVIATIONS:  # "U.", "Dr.", "18. Oktober"
            continue
        count += 1
        if count == sentences:
            return text[: m.start() + 1]
    return text


# The commonest words of the feed languages (articles, prepositions, auxiliaries). Dedup ignores them
# (they say nothing about which story an item reports), and `mediabot check` warns about a term that
# matches one (it would count in almost every text of that language).
_FUNCTION_WORD_TEXT = """
der die das den dem des ein eine einen einem einer eines und oder aber auch als an auf aus bei bis durch fuer
gegen hat haben hatte ist sind war waren wird werden wurde wurden sein seine seiner seinen ihr ihre ihren im in
mit nach nicht noch nur ob ohne sich sie so um unter ueber vom von vor wie wieder zu zum zur zwischen dass da
es er wir man mehr sei seien soll sollen kann koennen will wollen nun schon sehr jetzt heute gestern
the a an and or but of to in on at by for from with without as is are was were be been being has have had
this that these those it its their they he his she her we our not no more than after before over into about
said says will would could should can may also new
и в во на с со к по за из от до о об что как это его ее их он она они мы не но а же ли бы был была были будет
для при после перед над под между также уже еще только более чем
і в у на з із зі до за від по про що як це його її їх він вона вони ми не але а чи був була були буде для при
після перед над під між також вже ще тільки більш ніж
및 등 것 수 이 그 그리고 또 또한
"""
FUNCTION_WORDS = tuple(dict.fromkeys(_FUNCTION_WORD_TEXT.split()))


def words(text: str) -> list[str]:
    """Split into word tokens (letters and digits); hyphens and punctuation separate words."""
    return _WORD.findall(text)


# Text that was UTF-8, decoded once more as Windows-1252 (or Latin-1) on its way into a feed: "fÃ¼r",
# "â€ž", "ÐœÐ¾ÑÐºÐ²Ð°". Each run that spells one UTF-8 sequence byte by byte (a lead byte's character and
# its continuation bytes' characters) is decoded back; the rest of the text (a real "–", "é") stays.
_CP1252_BYTE = {bytes([b]).decode("cp1252"): b for b in range(0x80, 0xA0) if b not in (0x81, 0x8D, 0x8F, 0x90, 0x9D)}
_CONT = "[\u0080-\u00bf" + "".join(sorted(_CP1252_BYTE)) + "]"
_MOJIBAKE = re.compile(f"[\u00c2-\u00df]{_CONT}|[\u00e0-\u00ef]{_CONT}{{2}}|[\u00f0-\u00f4]{_CONT}{{3}}")


def _utf8_again(m: re.Match[str]) -> str:
    raw = bytes(_CP1252_BYTE.get(ch, ord(ch)) for ch in m.group())
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return m.group()


def repair_mojibake(text: str) -> str:
    """Undo UTF-8 read as Windows-1252/Latin-1, sequence by sequence; other text is left as it is."""
    return _MOJIBAKE.sub(_utf8_again, text) if _MOJIBAKE.search(text) else text
