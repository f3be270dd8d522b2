"""benchmark.lawfacts: typed key facts against tricky answers (no model needed).

Each row is an answer and the verdict the scorer must give on one fact: the right fact in other
words, numbers in words, negations, a wrong number next to the right phrase, limits that are not
negations, an echo of the question.
"""

from __future__ import annotations

import pytest

from benchmark import lawfacts

DAYS30 = {"tipo": "cantidad", "valor": 30, "unidad": "dia"}
RATE20 = {"tipo": "cantidad", "valor": 20, "unidad": "por_ciento"}
USD1200 = {"tipo": "cantidad", "valor": 1200, "unidad": "usd", "calculo": "3000 - 1800"}
TWO_THIRDS = {"tipo": "fraccion", "valor": "2/3"}
NEW_YEAR = {"tipo": "fecha", "valor": "2025-01-01"}
DEC31 = {"tipo": "fecha", "valor": "--12-31"}
NO = {"tipo": "veredicto", "valor": "no", "formas": ["no puede", "prohibido"]}
PRESIDENT = {"tipo": "concepto", "formas": ["Presidente de la República", "primer mandatario", "jefe de Estado"]}
YEARLY = {"tipo": "concepto", "formas": ["cada año", "anualmente", "anual"]}
RETRO = {"tipo": "concepto", "formas": ["irretroactividad"], "contrarias": ["aplicación retroactiva"]}

NO_EFFECT = {"tipo": "concepto", "formas": ["no produce efecto", "ningún efecto", "sin efecto", "carece de efecto"]}

CASES = [
    # (answer, fact, stated, contradicted)
    ("El plazo es de treinta días (art. 116).", DAYS30, True, False),
    ("Treinta días.", DAYS30, True, False),
    ("Tiene 30 días hábiles.", DAYS30, True, False),
    ("El plazo es de un mes.", DAYS30, False, False),
    ("No son 30 días sino 15.", DAYS30, False, True),
    ("El plazo no es de treinta días: es de quince.", DAYS30, False, True),
    ("El plazo no podrá exceder de 30 días.", DAYS30, True, False),
    ("Dispone de no menos de treinta días.", DAYS30, True, False),
    ("El plazo es de 30 meses.", DAYS30, False, False),
    ("Son quince días, prorrogables por otros treinta días.", DAYS30, True, False),
    ("Se cobra un recargo del 20 %.", RATE20, True, False),
    ("El recargo es del veinte por ciento del principal.", RATE20, True, False),
    ("El recargo es de 20 dólares.", RATE20, False, False),
    ("Le quedan USD 1.200 por pagar.", USD1200, True, False),
    ("Debe pagar mil doscientos dólares.", USD1200, True, False),
    ("Debe pagar $1.200,00.", USD1200, True, False),
    ("Debe pagar USD 1.800.", USD1200, False, False),
    ("Se necesitan las dos terceras partes de los votos.", TWO_THIRDS, True, False),
    ("Se necesitan dos tercios de los votos.", TWO_THIRDS, True, False),
    ("Basta la mitad más uno.", TWO_THIRDS, False, False),
    ("Se aplica desde el 1 de enero de 2025.", NEW_YEAR, True, False),
    ("Rige a partir del primero de enero del 2025.", NEW_YEAR, True, False),
    ("Rige desde el 01/01/2025.", NEW_YEAR, True, False),
    ("Rige desde el 1 de enero de 2024.", NEW_YEAR, False, False),
    ("El ejercicio cierra el 31 de diciembre.", DEC31, True, False),
    ("No. El artículo 3 lo impide.", NO, True, False),
    ("No puede, porque la ley lo prohíbe.", NO, True, False),
    ("Sí, puede hacerlo con un acuerdo ministerial.", NO, False, True),
    ("El ministro no puede crear impuestos por acuerdo.", NO, True, False),
    ("Los fija el Presidente de la República.", PRESIDENT, True, False),
    ("Es potestad del jefe de Estado.", PRESIDENT, True, False),
    ("Los fija la República a través de su Presidente.", PRESIDENT, True, False),
    ("No es el Presidente de la República sino la Asamblea Nacional.", PRESIDENT, False, True),
    ("Los fija el Presidente de la Asamblea.", PRESIDENT, False, False),
    ("La declaración se presenta anualmente.", YEARLY, True, False),
    ("Se presenta una vez cada año.", YEARLY, True, False),
    ("No, necesita 30 días de plazo.", DAYS30, True, False),
    ("Veinte días, no treinta días.", DAYS30, False, True),
    ("Se requieren las tres cuartas partes.", {"tipo": "fraccion", "valor": "3/4"}, True, False),
    ("Basta la tercera parte de los votos.", {"tipo": "fraccion", "valor": "1/3"}, True, False),
    ("Son veinte\ny un días.", {"tipo": "cantidad", "valor": 21, "unidad": "dia"}, True, False),
    ("Solo por renuncia expresa.", {"tipo": "concepto", "formas": ["renuncia expresa"]}, True, False),
    ("No podían tener participaciones permanentes.",
     {"tipo": "concepto", "formas": ["participaciones permanentes", "no podían tener participaciones"]}, True, False),
    ("Sí podían tener participaciones permanentes.",
     {"tipo": "concepto", "formas": ["no podían tener participaciones"]}, False, True),
    ("Es una falta grave.", {"tipo": "concepto", "formas": ["falta grave"]}, True, False),
    ("Si no paga en ese mes, puede matricular pagando la multa.",
     {"tipo": "concepto", "formas": ["pagando la multa"]}, True, False),
    ("No, es gratuito.", {"tipo": "concepto", "formas": ["gratuito"]}, True, False),
    ("No es gratuito.", {"tipo": "concepto", "formas": ["gratuito"]}, False, True),
    ("Si el requerido no paga en treinta días, se embargan sus bienes.", DAYS30, True, False),
    ("La multa va de 30 a 1.500 dólares.", {"tipo": "cantidad", "valor": 30, "unidad": "usd"}, True, False),
    ("Lo resuelve el mismo organismo.", {"tipo": "concepto", "formas": ["mismo organismo"]}, True, False),
    ("Lo resuelve otro organismo.", {"tipo": "concepto", "formas": ["mismo organismo"]}, False, False),
    ("Rige el principio de irretroactividad.", RETRO, True, False),
    ("Rige la irretroactividad, salvo que la ley permita su aplicación retroactiva.", RETRO, True, True),
    # a positive phrasing of a negative fact is not contradicted by the fact's negative phrasings
    ("La orden carece de todo efecto jurídico.", NO_EFFECT, True, False),
    ("Queda sin efecto.", NO_EFFECT, True, False),
    ("La orden surte efecto normalmente.", NO_EFFECT, False, True),
    # a negation reaches over a light verb to what it denies
    ("No puede hacerlo en el consulado.", {"tipo": "concepto", "formas": ["en el consulado"]}, False, True),
    ("Puede hacerlo en el consulado.", {"tipo": "concepto", "formas": ["en el consulado"]}, True, False),
    ("La negativa no permite presumir nada.", {"tipo": "concepto", "formas": ["presumir"]}, False, True),
]


@pytest.mark.parametrize(("answer", "fact", "stated", "contradicted"), CASES,
                         ids=[f"{i:02d}-{c[0][:30]}" for i, c in enumerate(CASES)])
def test_fact_verdicts(answer, fact, stated, contradicted):
    verdict = lawfacts.fact_verdict(answer, fact)
    assert (verdict.stated, verdict.contradicted) == (stated, contradicted)
    assert verdict.score == float(stated and not contradicted)


@pytest.mark.parametrize(("expr", "value"), [
    ("3000 - 1800", 1200),
    ("30000 * 20 / 100", 6000),
    ("round(1000 / 3, 2)", 333.33),
    ("fecha('2024-08-15') + dias(20)", "2024-09-04"),
    ("siguiente_habil(fecha('2023-03-10') + anios(1))", "2024-03-11"),   # 10-III-2024 was a Sunday
    ("fecha('2024-01-31') + meses(1)", "2024-02-29"),
    ("habiles(fecha('2024-05-09'), 3)", "2024-05-14"),   # Thursday + 3 business days = Tuesday
])
def test_calculations_are_checked_by_code(expr, value):
    got = lawfacts.evaluate_calculo(expr)
    assert (got.isoformat() if hasattr(got, "isoformat") else float(got)) == value


@pytest.mark.parametrize("expr", ["open('x')", "().__class__", "fecha('2024-01-01') + 3", "1 +"])
def test_calculations_refuse_anything_else(expr):
    with pytest.raises(lawfacts.FactError, match="calculo"):
        lawfacts.evaluate_calculo(expr)
