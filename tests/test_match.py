"""The matcher on the cases real news needs: inflection, compounds, scripts, transliteration, particles."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bot.config import Rule, Term, Watchlist, load_config
from bot.match import Matcher
from tests.conftest import ROOT, run_cli, write_feeds_yaml
from tests.servers import Route, rss


def wl(groups: dict[str, list[Term]], rules: tuple[Rule, ...] = (), exclude: tuple[Term, ...] = (),
       fields: str = "title+summary") -> Watchlist:
    g = {k: tuple(v) for k, v in groups.items()}
    return Watchlist(id="w", name="w", description="d", groups=g, rules=rules or (Rule(tuple(g)),),
                     exclude=exclude, fields=fields)


PLACE = Term("Kursk", aliases=("Курск", "Курщина", "쿠르스크"))
DPRK = Term("Nordkorea", aliases=("North Korea", "Північна Корея", "북한"))


@pytest.mark.parametrize(("text", "expected"), [
    ("nordkoreanische Truppen", True),
    ("der nordkoreanischen Armee", True),
    ("Nordkorea-Soldaten gesichtet", True),
    ("NORDKOREA", True),
    ("Nord Korea", False),
    ("Südkorea", False),
    ("북한군이 이동", True),
    ("Північної Кореї", True),
])
def test_inflection_compounds_and_scripts(text, expected):
    assert bool(Matcher([wl({"dprk": [DPRK]})]).match(text)) is expected


@pytest.mark.parametrize("text", ["Курск", "Курска", "Курской области", "Курщина", "Курщині", "Курськ",
                                  "쿠르스크에서", "Kursker Gebiet", "im Gebiet Kursk"])
def test_one_alias_list_covers_a_name_across_scripts_and_cases(text):
    assert Matcher([wl({"place": [PLACE]})]).match(text)


@pytest.mark.parametrize(("term", "text"), [
    ("Pjöngjang", "Pyongyang"), ("Schoigu", "Shoigu"), ("Lawrow", "Lavrov"), ("Beloussow", "Belousov"),
    ("Straße", "Strasse"), ("Müller", "Mueller"),
])
def test_transliteration_and_umlaut_variants(term, text):
    assert Matcher([wl({"x": [Term(term)]})]).match(f"Heute: {text} trifft Kim")


@pytest.mark.parametrize(("term", "text", "expected"), [
    ("Beistandsklausel", "die Beistandsklauzel greift", True),  # 16 letters: one slip is fine at 90
    ("Verteidigungsminister", "Verteidigunksminister Beloussow", True),
    ("Pjöngjang", "Pjongyanq", False),  # 9 letters folded: at 90 no slip at all
    ("Pjöngjang", "Pjöngjangs", True),  # ... but inflection still matches
])
def test_long_stems_tolerate_one_slip_short_ones_none(term, text, expected):
    assert bool(Matcher([wl({"g": [Term(term, threshold=90)]})]).match(text)) is expected


@pytest.mark.parametrize(("term", "text", "expected"), [
    ("Beschuss", "unter schwerem Beschuss", True),
    ("Beschuss", "nach Beschüssen der Grenzorte", True),
    ("Beschuss", "Die Behörden haben beschert", False),  # "besh" would begin beschert, Bescheid
    ("soldier", "two soldiers captured", True),
    ("soldier", "the shells were sold", False),
    ("Суджа", "бои у Суджи", True),  # a vowel alone may still go: Slavic case endings
])
def test_an_ending_and_a_vowel_never_leave_a_four_letter_stem(term, text, expected):
    assert bool(Matcher([wl({"g": [Term(term)]})]).match(text)) is expected


def test_short_stems_need_the_whole_word():
    m = Matcher([wl({"kim": [Term("Kim")]})])
    assert m.match("Kim trifft Putin") and m.match("Kims Truppen")
    assert not m.match("Kimchi-Festival in Seoul")


def test_acronym_is_case_sensitive_and_whole_word():
    m = Matcher([wl({"a": [Term("KN-23", mode="acronym"), Term("DPRK", mode="acronym")]})])
    assert m.match("Russia fires KN-23 missiles")
    assert m.match("DPRK troops")
    assert not m.match("kn-23 in lower case")
    assert not m.match("DPRKS")


@pytest.mark.parametrize(("text", "expected"), [
    ("DPRK's soldiers deployed to Russia", True),  # the commonest English headline form; it matched nothing
    ("DPRK’s soldiers deployed to Russia", True),
    ("Russia fires North Korean KN-23s at Kyiv", True),
    ("DPRKsome soldiers", False),
    ("KN-23seconds", False),
])
def test_an_acronym_takes_english_possessive_and_plural_s(text, expected):
    m = Matcher([wl({"a": [Term("KN-23", mode="acronym"), Term("DPRK", mode="acronym")]})])
    assert bool(m.match(text)) is expected


def test_regex_uses_re2_and_cannot_backtrack_forever():
    m = Matcher([wl({"r": [Term(r"(a+)+$", mode="regex")]})])
    # A classic catastrophic-backtracking input for a backtracking engine; RE2 answers in linear time.
    assert not m.match("a" * 5000 + "b")
    assert Matcher([wl({"r": [Term(r"KN-?2[34]", mode="regex")]})]).match("KN24 launched")


def test_exclusion_vetoes_and_near_requires_proximity():
    groups = {"place": [PLACE], "war": [Term("Schlacht"), Term("Krieg")]}
    m = Matcher([wl(groups, exclude=(Term("Schlacht bei Kursk"),))])
    assert m.match("Krieg: Kämpfe bei Kursk")
    assert not m.match("80 Jahre Schlacht bei Kursk")
    near = Matcher([wl({"soldaten": [Term("Soldat")], "dprk": [DPRK]}, rules=(Rule(("soldaten", "dprk"), near=3),))])
    assert near.match("Soldaten aus Nordkorea")
    assert not near.match("Soldaten " + "und " * 10 + "Nordkorea")


def test_title_only_watchlist_ignores_the_summary():
    m = Matcher([wl({"place": [PLACE]}, fields="title")])
    assert m.match("Kursk", "")
    assert not m.match("Wetter", "Regen in Kursk")


def test_title_lead_watchlist_ignores_background_after_the_second_sentence():
    groups = {"dprk": [DPRK], "treaty": [Term("Vertrag")]}
    background = ("Kim Jong Un lässt Raketen testen", "Die Starts fanden am 18. Oktober statt. Dr. Park sah "
                  "zu. Nordkorea hat mit Moskau einen Vertrag geschlossen.")
    assert Matcher([wl(groups)]).match(*background)
    assert not Matcher([wl(groups, fields="title+lead")]).match(*background)
    lead_item = ("Pjöngjang feiert", "Nordkorea begeht den Jahrestag. Der Vertrag mit Moskau gilt seit 2024.")
    [match] = Matcher([wl(groups, fields="title+lead")]).match(*lead_item)
    assert {h.field for h in match.hits} == {"summary"}


def test_title_lead_reads_only_the_lead_of_a_full_text_summary():
    groups = {"dprk": [DPRK], "treaty": [Term("Vertrag")]}
    body = "Nordkorea feiert den Jahrestag. Tausende marschieren in Pjöngjang. " + "Es regnet. " * 200
    late = body + "Der Vertrag mit Moskau gilt seit 2024."
    early = "Nordkorea feiert den Vertrag. " + body
    lead_only = Matcher([wl(groups, fields="title+lead")])
    assert not lead_only.match("Jahrestag in Pjöngjang", late)
    assert lead_only.match("Jahrestag in Pjöngjang", early)
    both = Matcher([wl(groups, fields="title+lead"), Watchlist(id="all", name="all", description="d",
                    groups={k: tuple(v) for k, v in groups.items()}, rules=(Rule(tuple(groups)),))])
    assert [m.watchlist for m in both.match("Jahrestag in Pjöngjang", late)] == ["all"]


def test_lead_is_the_first_two_sentences():
    from bot.text import lead

    assert lead("Am 18. Oktober kam es zu Kämpfen. Laut Dr. Smirnow flohen 2000. Dritter Satz.") == (
        "Am 18. Oktober kam es zu Kämpfen. Laut Dr. Smirnow flohen 2000. Dritter Satz.")
    assert lead("U.S. officials met. They agreed! Background follows.") == "U.S. officials met. They agreed!"
    assert lead("김정은이 방문했다. 푸틴이 말했다. 배경이다.") == "김정은이 방문했다. 푸틴이 말했다."
    assert lead("Один. Два. Три.") == "Один. Два."


def test_korean_headline_shorthand_for_north_korea_counts():
    matcher = Matcher(load_config(ROOT / "watchlists").watchlists)
    assert [m.watchlist for m in matcher.match("北, 러시아에 병력 추가 파병", "")] == ["dprk-troops"]


@pytest.mark.parametrize(("text", "expected"), [
    ("北노동자, 러군 입대", True),   # 北 glued to a Korean noun: North Korean workers
    ("北군 수백명", True),
    ("北에 기술 이전", True),       # 北 with a particle
    ("北京 회담", False),           # two Han characters: Beijing, not North Korea
    ("남북관계", False),
])
def test_a_han_abbreviation_glued_to_a_korean_word_counts_in_exact_mode(text: str, expected: bool) -> None:
    matcher = Matcher([wl({"dprk": [Term("北", mode="exact")]})])
    assert bool(matcher.match(text)) is expected


@pytest.fixture(scope="module")
def shipped() -> Matcher:
    return Matcher(load_config(ROOT / "watchlists").watchlists)


def lists(matcher: Matcher, title: str, summary: str = "") -> set[str]:
    """The watchlists an item alerts on."""
    return {m.watchlist for m in matcher.match(title, summary)}


# Words a stem of the shipped lists once took although nobody meant them (found by listing, per term,
# the words it took in the corpus and the real feeds): each sentence must stay quiet on its list, and
# the sentence next to it shows the term still doing its job.
@pytest.mark.parametrize(("watchlist", "false_friend", "meant"), [
    ("kursk-front", "В Курске за 10 минут выпало много снега", "Под Курском сапёры обезвредили мины"),
    ("kursk-front", "Курщина: наступного тижня відкриють школи", "Наступ на Курщині: ЗСУ просунулися"),
    ("kursk-front", "Kursk: Vorstand des Stahlwerks tritt zurück", "Ukrainischer Vorstoß in die Region Kursk"),
    ("russia-dprk-treaty", "Wolodymyr Selenskyj: Nordkorea will mehr Soldaten schicken",
     "Duma-Chef Wolodin in Pjöngjang eingetroffen"),
    ("russia-dprk-treaty", "North Korea putting on a summit show for its party congress",
     "Putin's envoy lands in Pyongyang for talks"),
    ("russia-dprk-treaty", "Kimmel mocks Putin over Russia visit", "Putin receives Kim's envoy in Moscow"),
    ("dprk-troops", "Nordkorea und Russland: Waffenstillstand in der Ukraine rückt näher",
     "Nordkorea liefert Russland Waffen für den Krieg gegen die Ukraine"),
    ("dprk-troops", "Russian testimony: North Korea deadline for Moscow passes",
     "Kyiv: dead North Korean soldiers found in Russia's Kursk region"),
    # A bug hunt's false alerts: jets called "fighters", a war cemetery, a children's camp.
    ("dprk-troops", "Russia delivers MiG-29 fighters to North Korea", "North Korean troops fight for Russia in Kursk"),
    ("kursk-front", "Deutscher Soldatenfriedhof in Kursk geschändet", "Ukrainische Drohnen greifen Kursk an"),
    ("dprk-troops", "Kursk: Kinder verbringen Ferien in Nordkorea", "Kursk: Nordkoreanische Soldaten räumen Minen"),
])
def test_shipped_terms_do_not_take_the_words_they_once_took(shipped: Matcher, watchlist: str, false_friend: str,
                                                            meant: str) -> None:
    assert watchlist not in lists(shipped, false_friend)
    assert watchlist in lists(shipped, meant)


# Stories the shipped lists once missed because they name who speaks or where, not the country: Russia's
# spokespeople, parliament and agencies; the port and the city where North Korean arms turn up.
@pytest.mark.parametrize(("watchlist", "title", "summary"), [
    ("russia-dprk-treaty", "Sacharowa verteidigt die Beistandsklausel mit Nordkorea", ""),
    ("russia-dprk-treaty", "Песков: соглашение с КНДР ни против кого не направлено", ""),
    ("russia-dprk-treaty", "Matwijenko empfängt Delegation aus Pjöngjang", ""),
    ("russia-dprk-treaty", "Roskosmos will nordkoreanischen Kosmonauten ausbilden", ""),
    ("russia-dprk-treaty", "Seoul warns of growing rapprochement",
     "Officials see Russia and North Korea drawing ever closer."),
    # Russian aircraft and submarine technology for Pyongyang; North Korea's other voices.
    ("russia-dprk-treaty", "Moskau könnte Pjöngjang Su-57 überlassen", ""),
    ("russia-dprk-treaty", "Admiral: Moscow may pay for Pyongyang's troops with Su-27 jets", ""),
    ("russia-dprk-treaty", "Росія може віддати КНДР МіГ-29 за солдатів", ""),
    ("russia-dprk-treaty", "러, 북에 핵잠수함 부품 넘겨", "정부는 북한과 러시아의 거래를 확인하지 않았다."),
    ("russia-dprk-treaty", "Белоусов и Но Гван Чхоль провели переговоры", ""),
    # A leader's trip to the other country, named as a trip.
    ("russia-dprk-treaty", "Kreml bestätigt Putin-Reise nach Nordkorea", ""),
    ("russia-dprk-treaty", "Kim wraps up his Russia trip", "North Korea's leader left Vladivostok by train."),
    # Korean "blood alliance" and "military alliance" are the alliance.
    ("russia-dprk-treaty", "파병으로 굳어진 북러 혈맹", ""),
    ("russia-dprk-treaty", "[사설] 북러 군사동맹, 대응책 시급", ""),
    # Russian help with aircraft: an early-warning plane is aircraft too.
    ("russia-dprk-treaty", "Seoul vermutet russische Technik in Nordkoreas Frühwarnflugzeug", ""),
    ("russia-dprk-treaty", "합참 \"北 조기경보기 부품, 러시아와 관련\"", ""),
    # Russian know-how for Pyongyang's weapons; 北 with a particle (北에).
    ("russia-dprk-treaty", "Moskau gibt Pjöngjang Know-how für Kampfdrohnen", ""),
    ("russia-dprk-treaty", "Seoul: Russian rocket experts are working in Pyongyang", ""),
    ("russia-dprk-treaty", "Росія передає КНДР технології для ракет", ""),
    ("russia-dprk-treaty", "러, 北에 위성 기술 이전", ""),
    # A headline naming North Korea and the pact is treaty news even when it names Ukraine too.
    ("russia-dprk-treaty", "Schickt Kim nach dem Beistandspakt Soldaten in die Ukraine?",
     "Experten in Moskau halten das für möglich."),
    # Kim by his surname alone in Russian and Ukrainian, North Korea as 북 in "북·러".
    ("russia-dprk-treaty", "Путин и Ким обсудили выполнение договора", ""),
    ("russia-dprk-treaty", "Путін і Кім обмінялися посланнями", ""),
    ("russia-dprk-treaty", "북·러 조약 1주년…\"동맹 더 굳건히\"", ""),
    # "Brotherly help" in freeing Kursk is how Moscow's diplomats name the troops.
    ("dprk-troops", "Lawrow lobt Pjöngjangs brüderliche Hilfe für Kursk", ""),
    ("dprk-troops", "Посольство: КНДР помогла освободить Курскую область", ""),
    ("dprk-troops", "Embassy thanks North Korea for brotherly help",
     "The only country to help liberate the Kursk region, it said."),
    # Russia launching North Korean missiles is arms news; a launch in the headline is a test.
    ("dprk-troops", "Kyiv: most North Korean missiles fired by Russia miss",
     "Russia has launched dozens of KN-23 missiles since December, prosecutors say."),
    # Pyongyang's name for the deployment: units of the "overseas operation".
    ("dprk-troops", "Kim Jong Un ehrt Kommandeure im Auslandseinsatz", ""),
    ("dprk-troops", "김정은, 해외작전부대 전사자 추모", ""),
    # North Korean workers in Russia signing up with its army.
    ("dprk-troops", "Nordkoreanische Arbeiter lassen sich von Russlands Armee anwerben", ""),
    ("dprk-troops", "Workers from North Korea recruited into Russia's army", ""),
    ("dprk-troops", "Рабочие из КНДР заключают контракты с армией России", ""),
    ("dprk-troops", "Korean markings found on missile debris in Kharkiv",
     "Investigators say the fragments come from a KN-23 built in North Korea."),
    ("dprk-troops", "Satellitenbilder: Wieder Frachter im Hafen Rajin",
     "Experten vermuten Munition für Russland an Bord."),
    ("dprk-troops", "Budanow: Nordkorea liefert Russland Panzer", ""),
    # A third country's minister on a visit elsewhere: his talks are not Moscow's and Pyongyang's diplomacy.
    ("dprk-troops", "Britischer Außenminister wirbt in Nairobi um Unterstützung",
     "Bei seinem Besuch äußerte er Sorge über nordkoreanische Soldaten an der Seite Russlands."),
    # A ministry's statement is not a meeting.
    ("dprk-troops", "US-Sanktionen gegen Reedereien wegen Munition aus Nordkorea",
     "Das Außenministerium in Washington setzt drei russische Firmen auf die Liste."),
    ("dprk-troops", "Кремль отрицает поставки оружия из КНДР", ""),
    # Third countries on the arms: sanctions announced after a meeting are still arms news.
    ("dprk-troops", "Japan sanktioniert Reeder wegen nordkoreanischer Granaten für Russland",
     "Außenministerin Kamikawa kündigte die Maßnahmen nach einem Treffen mit Amtskollegen an."),
    ("dprk-troops", "NATO condemns North Korean missiles for Russia", "Leaders met in Washington for talks."),
])
def test_shipped_lists_catch_stories_told_by_who_speaks_or_where(shipped: Matcher, watchlist: str, title: str,
                                                                 summary: str) -> None:
    assert watchlist in lists(shipped, title, summary)


# Found by a search over the treaty list's vetoes and headline requirements on the tuning items and holdout
# to holdout51 (bench/BENCHMARKS.md); each headline below was missed before.
@pytest.mark.parametrize(("title", "summary"), [
    # Both countries in the headline and the pact in the lead: treaty news even when the headline also names
    # who is worried.
    ("Tokio besorgt: Nordkorea und Russland rücken militärisch zusammen",
     "Der Partnerschaftsvertrag vom Juni 2024 verpflichtet beide zu Beistand im Kriegsfall."),
    # North Korea in the headline, the Russian official who arrives only in the lead.
    ("Nordkorea: Hoher Gast aus Moskau gelandet", "Sergej Schoigu traf am Mittwoch in Pjöngjang ein."),
    # A story that cites the pact, even when its headline names Ukraine.
    ("Estonian weekly: no North Korean troops for Ukraine yet",
     "North Korea does not plan to send soldiers soon, even as its defence pact with Russia deepens."),
    # A leader's trip told in the lead.
    ("Kim verlässt Wladiwostok", "Nach sechs Tagen endet die Russlandreise des Machthabers mit dem Zug."),
])
def test_shipped_treaty_list_reads_the_pact_the_visitor_and_the_trip_in_the_lead(shipped: Matcher, title: str,
                                                                                summary: str) -> None:
    assert "russia-dprk-treaty" in lists(shipped, title, summary)


# Russian technology in the headline of a troop story, Russia named in the lead.
@pytest.mark.parametrize(("title", "summary"), [
    ("Reis und Technologie: Was Nordkorea für seine Soldaten bekommt",
     "Russland zahle pro Soldat und liefere Weltraumtechnik, schätzt ein Institut in Seoul."),
    ("Рис и космические технологии: что КНДР получает за своих солдат",
     "Россия платит за каждого бойца и передаёт спутниковые технологии, считают в Сеуле."),
])
def test_russian_technology_in_a_troop_headline_is_treaty_news_too(shipped: Matcher, title: str, summary: str) -> None:
    assert "russia-dprk-treaty" in lists(shipped, title, summary)


# Kursk and North Korea in the headline: the soldiers and builders there, even in a teaser about talks.
@pytest.mark.parametrize(("title", "summary"), [
    ("Minenräumung bei Kursk: Nordkoreanische Bauleute sollen nachrücken",
     "Im Grenzgebiet sind 40 Orte geräumt, teilte die Gebietsregierung mit."),
    ("쿠르스크 주지사 방북…\"북한 영웅들 기억할 것\"", "주지사는 평양에서 러시아 대표단과 함께 회담을 가졌다."),
])
def test_kursk_and_north_korea_in_the_headline_is_troop_news(shipped: Matcher, title: str, summary: str) -> None:
    assert "dprk-troops" in lists(shipped, title, summary)


@pytest.mark.parametrize(("title", "summary"), [
    ("Kursk wird Partnerstadt des nordkoreanischen Kaesong", "Der Stadtrat in Russland stimmte der Partnerschaft zu."),
    ("Курск может породниться с Пхеньяном", "Власти Курской области предложили побратимство со столицей КНДР."),
    ("러 쿠르스크, 평양과 자매결연 추진", "러시아 쿠르스크주 당국이 북한 평양과의 결연을 제안했다."),
])
def test_kursk_twinned_with_a_north_korean_city_is_not_troop_news(shipped: Matcher, title: str, summary: str) -> None:
    assert "dprk-troops" not in lists(shipped, title, summary)


# Russian fighters or air defence for Pyongyang in the headline, even as the soldiers' pay.
@pytest.mark.parametrize(("title", "summary"), [
    ("MiG-29 und Su-27 als Lohn für Kims Soldaten",
     "Russland soll Nordkorea Kampfflugzeuge liefern, sagt ein US-Admiral."),
    ("Pantsir battery for Pyongyang's missile bases",
     "Russia sent North Korea at least one air-defence system, monitors say."),
])
def test_russian_fighters_for_north_korea_are_treaty_news(shipped: Matcher, title: str, summary: str) -> None:
    assert "russia-dprk-treaty" in lists(shipped, title, summary)


# Putin and Kim both in the headline: their relationship is the story, whatever the verb.
@pytest.mark.parametrize(("title", "summary"), [
    ("Putin empfängt Kim am Kosmodrom", "Der Kremlchef führte seinen Gast aus Pjöngjang durch die Startanlagen."),
    ("Кім Чен Ин провів Путіна до літака", "Прощання в аеропорту Пхеньяна тривало майже годину."),
    ("김정은, 푸틴에게 전폭 지지 약속", "두 정상은 베이징에서 만나 협력 강화를 논의했다."),
])
def test_both_leaders_in_the_headline_is_treaty_news(shipped: Matcher, title: str, summary: str) -> None:
    assert "russia-dprk-treaty" in lists(shipped, title, summary)


def test_both_leaders_in_a_headline_about_the_fighting_is_not_treaty_news_alone(shipped: Matcher) -> None:
    assert "russia-dprk-treaty" not in lists(shipped, "Putin lobt Kims Soldaten für die Kämpfe an der Front",
                                             "Die Nordkoreaner hätten sich bei Gefechten ausgezeichnet.")


def test_a_russian_minister_on_civilian_business_in_the_lead_is_not_treaty_news(shipped: Matcher) -> None:
    assert "russia-dprk-treaty" not in lists(shipped, "Nordkorea lädt russische Touristen an den Strand",
                                             "Minister Koslow kündigte neue Reisen nach Wonsan an.")


def test_north_korean_soldiers_at_the_inter_korean_front_are_not_russias_war(shipped: Matcher) -> None:
    assert "dprk-troops" not in lists(shipped, "North Korea starts taking down border loudspeakers",
                                      "Seoul's military saw North Korean soldiers remove the speakers in frontline "
                                      "areas, days after the South switched its own off.")
    assert "dprk-troops" in lists(shipped, "North Korean soldiers reach the front in Russia",
                                  "Seoul's spy agency says the first units moved from training camps this week.")


def test_russian_help_for_pyongyangs_missiles_is_treaty_news_not_arms_for_russia(shipped: Matcher) -> None:
    assert lists(shipped, "Stoltenberg warnt vor russischer Hilfe für Nordkoreas Raketenprogramm") == {
        "russia-dprk-treaty"}
    assert "dprk-troops" in lists(shipped, "Budanow: Nordkorea liefert Russland Raketen")


def test_reactors_for_pyongyang_are_russian_help_and_treaty_news(shipped: Matcher) -> None:
    assert "russia-dprk-treaty" in lists(shipped, "Russischer Frachter hatte zwei Reaktoren für Nordkorea geladen",
                                         "Ermittler fanden die Ladung im Wrack im Mittelmeer.")


def test_russian_missile_or_nuclear_technology_for_pyongyang_in_the_headline_is_not_arms_for_russia(
        shipped: Matcher) -> None:
    assert "dprk-troops" not in lists(shipped, "Tokio fürchtet: Pjöngjang könnte russische Raketentechnik erhalten",
                                      "Moskau könnte Nordkorea Technik für Atomwaffen und Raketen liefern, heißt es im "
                                      "Weißbuch.")
    assert "dprk-troops" not in lists(shipped, "NBC: Washington fürchtet russische Atomhilfe für Kim",
                                      "Moskau könnte Nordkorea Technik für Raketen auf U-Booten liefern.")
    assert "dprk-troops" in lists(shipped, "Seoul: Nordkorea liefert Russland Raketen",
                                  "Die Raketentechnik stamme aus eigener Produktion, sagt der Geheimdienst.")


def test_an_analysis_of_the_pact_is_not_arms_news_for_its_teaser_naming_weapons(shipped: Matcher) -> None:
    assert lists(shipped, "Der Pakt zwischen Moskau und Pjöngjang setzt Seoul unter Druck",
                 "Liefert Südkorea Waffen an die Ukraine, könnte Russland Nordkorea Raketentechnik geben.") == {
        "russia-dprk-treaty"}
    # Arms in the headline stay arms news, pact or not.
    assert "dprk-troops" in lists(shipped, "Seoul: Nordkorea liefert Russland Raketen – trotz Pakt-Kritik")


def test_shells_for_russia_in_a_summit_story_are_arms_news_but_talk_nearby_is_not(shipped: Matcher) -> None:
    title = "Vor dem Gipfel: Was Kim von Putin will"
    # North Korea, its shells and Russia in one phrase: a supply, whatever the meeting around it.
    assert lists(shipped, title, "Beim Treffen in Wladiwostok dürfte es um nordkoreanische Granaten für Russland "
                                 "gehen, glauben Diplomaten in Seoul.") == {"dprk-troops", "russia-dprk-treaty"}
    # The same words spread over the sentence of a summit story stay treaty news only.
    assert lists(shipped, title, "Beim Treffen in Wladiwostok dürfte es um Granaten gehen; Russland braucht sie, "
                                 "sagen Diplomaten über Nordkorea.") == {"russia-dprk-treaty"}


def test_north_koreas_own_recruits_are_not_troops_for_russia(shipped: Matcher) -> None:
    assert "dprk-troops" not in lists(shipped, "North Korea's army recruits more teenagers",
                                      "Conscription age lowered, state media say.")


def test_shipped_treaty_list_leaves_arms_for_russia_to_the_troops_list(shipped: Matcher) -> None:
    # North Korean tanks for Russia are troop news; the treaty list is about what the partnership itself does.
    assert lists(shipped, "Budanow: Nordkorea liefert Russland Panzer") == {"dprk-troops"}


def test_seoul_and_moscow_between_themselves_are_not_treaty_news(shipped: Matcher) -> None:
    # South Korea's own diplomacy with Russia mentions the North in the teaser; the headline leaves it out.
    for title, summary in (("Seoul summons Russian envoy over remarks on Yoon",
                            "Moscow had criticised the president's words on North Korea's nuclear programme."),
                           ("Лавров встретился с главой МИД Южной Кореи",
                            "Министры обсудили отношения России и Республики Корея и ситуацию вокруг КНДР.")):
        assert "russia-dprk-treaty" not in lists(shipped, title, summary), title
    # With North Korea in the headline, Seoul's view of the partnership is treaty news.
    assert "russia-dprk-treaty" in lists(shipped, "Seoul warnt vor Moskaus Annäherung an Pjöngjang",
                                         "Die Regierung sieht Russland und Nordkorea immer enger zusammenrücken.")
    assert "russia-dprk-treaty" in lists(shipped, "윤 대통령 \"러시아의 대북 기술 이전, 심각한 위협\"", "")


def test_the_kursk_governors_reports_are_front_news_without_naming_kursk(shipped: Matcher) -> None:
    for title in ("Хинштейн: ночью над регионом сбиты 30 беспилотников",
                  "Khinshtein says drone hit a bus, two wounded"):
        assert "kursk-front" in lists(shipped, title), title
    # Repairs of the Second World War's graves are history, even when the governor announces them.
    assert "kursk-front" not in lists(shipped, "Chinstein: Kriegsdenkmäler im Kreis werden saniert",
                                      "Zum Jahrestag des Sieges setzt die Region Mahnmale instand.")


def test_kursk_villages_and_captures_are_front_news_and_the_reactor_is_not(shipped: Matcher) -> None:
    for title, summary in (("Росіяни заявили про захоплення Свердликова", ""),
                           ("Ukraine verliert Dorf Darjino im Grenzgebiet",
                            "Russische Truppen haben das Dorf zurückerobert."),
                           ("Zeit: у битві за Курщину немає переможців", ""),
                           ("Курщина: з відвойованих сіл вивезли 800 людей", "")):
        assert "kursk-front" in lists(shipped, title, summary), title
    # Russian "операций" is any operation (a reactor's start-up), not Ukraine's Kursk operation; town twinning
    # is the region's diplomacy; "darin" is not Darjino.
    for title, summary in (("Лихачёв объявил о начале пусковых операций на Курской АЭС-2", ""),
                           ("Курськ шукає місто-побратима в КНДР",
                            "Губернатор попросив МЗС підібрати партнера для прикордонних районів."),
                           ("Курск хочет породниться с Пхеньяном после боёв",
                            "Власти области благодарят КНДР за помощь в освобождении от ВСУ."),
                           ("쿠르스크, 평양과 자매결연 추진…우크라이나군 격퇴 1년",
                            "쿠르스크주는 전투 이후 복구 협력을 원한다고 밝혔다."),
                           ("Darin sind sich alle einig: Kim schickt Soldaten", "Experten sehen im Krieg Prestige.")):
        assert "kursk-front" not in lists(shipped, title, summary), title


def test_search_teams_recovering_soldiers_of_1942_are_history(shipped: Matcher) -> None:
    for title, summary in (("Suchtrupp birgt Gebeine von Rotarmisten im Gebiet Kursk",
                            "Die Soldaten fielen 1942 bei Kämpfen im Kreis Kastornoje."),
                           ("Курские поисковики подняли останки красноармейцев",
                            "Бойцы погибли в боях в Касторенском районе в 1942 году.")):
        assert "kursk-front" not in lists(shipped, title, summary), title


def test_moscows_kursk_station_and_road_crashes_near_kursk_are_not_front_news(shipped: Matcher) -> None:
    assert "kursk-front" not in lists(shipped, "Kursker Bahnhof in Moskau nach Bombendrohung evakuiert",
                                      "Reisende mussten den Bahnhof verlassen, die Polizei suchte nach Sprengstoff.")
    assert "kursk-front" not in lists(shipped, "Frontalzusammenstoß bei Kursk: zwei Fahrer verletzt",
                                      "Auf der Fernstraße nach Woronesch kam es zu einem Unfall zweier Lastwagen.")
    # The station's name is exact: troops "stationed in Kursk" are still front news.
    assert "kursk-front" in lists(shipped, "HUR: Nordkoreanische Soldaten weiter im Gebiet Kursk stationiert",
                                  "Die Truppen beschießen laut Kiew ukrainische Grenzorte mit Artillerie.")


def test_demining_of_kursk_is_front_news_even_when_north_korea_is_thanked_for_it(shipped: Matcher) -> None:
    # A thank-you to Pyongyang is diplomacy; clearing the region's mines is what kursk-front follows.
    for title in ("Kursk: 120 Dörfer minenfrei – dank nordkoreanischer Pioniere",
                  "Moskau dankt Pjöngjang für Minenräumer im Gebiet Kursk",
                  "Курская область: ещё 40 сёл очищены от взрывоопасных предметов"):
        assert "kursk-front" in lists(shipped, title), title
    assert "kursk-front" not in lists(shipped, "Moskau dankt Pjöngjang für Hilfe in Kursk",
                                      "Putin empfing den Botschafter.")
    # Greetings and concerts in the soldiers' honour are diplomacy and commemoration too.
    assert "kursk-front" not in lists(shipped, "Medwedew gratuliert Kim – und lobt Nordkoreas Soldaten im Raum Kursk",
                                      "Zum Jahrestag nannte er den Einsatz ein Zeichen der Freundschaft.")
    assert "kursk-front" not in lists(shipped, "Kim weint bei Konzert für heimgekehrte Minenräumer",
                                      "Das Regiment war aus dem Raum Kursk zurückgekehrt, wo es Minen geräumt hatte.")


@pytest.mark.parametrize("title", [
    "Kim Il Sung University to open an office in Novosibirsk",
    "Erster Direktflug von Moskau nach Pjöngjang gestartet",
    "Russische Touristen entdecken Nordkoreas Strände",
    "Российские школьники снова поедут в лагерь в КНДР",
    "Nordkoreanische Äpfel in russischen Supermärkten",
    "Orthodoxe Liturgie in Pjöngjang: Delegation aus Moskau zu Gast",
])
def test_civilian_contacts_between_the_two_countries_are_not_treaty_news(shipped: Matcher, title: str) -> None:
    # Blind readers given the list's definition leave trade, transport, tourism, schools, churches and the like out
    # of "the cooperation around" the treaty; the list follows them.
    assert "russia-dprk-treaty" not in lists(shipped, title)


def test_statecraft_between_the_two_countries_is_treaty_news(shipped: Matcher) -> None:
    for title in ("Putin receives Kim's envoy in Moscow",
                  "Regierungsdelegation aus Moskau in Pjöngjang eingetroffen",
                  "Putin schenkt Kim eine Aurus-Limousine",
                  "В Пхеньяне прошло заседание межправкомиссии России и КНДР",
                  "Russland und Nordkorea beginnen Bau einer Straßenbrücke über den Tumen",
                  "Russlands Gesundheitsminister zu Gesprächen in Pjöngjang",
                  "Delegation von Einiges Russland reist nach Pjöngjang",
                  "Kursker Gouverneur reist nach Pjöngjang"):
        assert "russia-dprk-treaty" in lists(shipped, title), title


def test_a_trip_needs_a_leader_and_is_not_history(shipped: Matcher) -> None:
    # Tourists' trips are not the leaders' diplomacy; Kim Il Sung's 1984 trip is history.
    for title in ("Russische Touristen buchen Reise nach Nordkorea", "1984: Kim Il Sungs lange Reise nach Moskau"):
        assert "russia-dprk-treaty" not in lists(shipped, title), title


def test_the_ukrainian_pronoun_kym_is_not_kim(shipped: Matcher) -> None:
    # "ким" (by whom) is spelt like Kim's surname; only the capitalised name counts.
    assert "russia-dprk-treaty" not in lists(shipped, "Новий договір: ким Росія замінить західних партнерів")
    assert "russia-dprk-treaty" in lists(shipped, "Новий договір: Кім і Росія")


def test_a_governor_speaking_about_north_korean_sappers_at_home_is_not_treaty_news(shipped: Matcher) -> None:
    assert "russia-dprk-treaty" not in lists(shipped, "Kursker Gouverneur: Nordkoreanische Pioniere räumen 90 Dörfer")


@pytest.mark.parametrize(("title", "summary"), [
    ("Kiew bricht die Beziehungen zu Nordkorea ab", "Pjöngjang hatte die von Russland gestützten Gebiete anerkannt."),
    ("Neuseeland verhängt Sanktionen gegen Helfer der Waffenlieferungen", "Betroffen sind Firmen aus Russland und "
     "Nordkorea; Außenminister Peters sprach von enger Zusammenarbeit."),
])
def test_a_third_country_acting_on_the_two_is_not_their_partnership(shipped: Matcher, title: str, summary: str) -> None:
    assert "russia-dprk-treaty" not in lists(shipped, title, summary)


def test_thanks_to_north_korea_for_kursk_is_troop_news(shipped: Matcher) -> None:
    # The help thanked for was North Korea's soldiers, even when the headline does not say so.
    assert "dprk-troops" in lists(shipped, "Moskau dankt Pjöngjang für Hilfe in Kursk")
    assert "dprk-troops" not in lists(shipped, "Moskau dankt Pjöngjang für Glückwünsche")


def test_films_and_museums_about_north_koreans_in_kursk_are_not_front_news(shipped: Matcher) -> None:
    # Blind readers of the definition keep commemoration out of kursk-front; the fighting itself stays in.
    for title in ("Nordkoreas Staatsfernsehen zeigt Doku über die Kämpfe in Kursk",
                  "Kim besucht Museum für die in Kursk gefallenen Soldaten"):
        assert "kursk-front" not in lists(shipped, title), title
    assert "kursk-front" in lists(shipped, "Nordkoreanische Soldaten greifen bei Kursk an")


def test_sport_between_the_two_countries_is_a_result_not_partnership_news(shipped: Matcher) -> None:
    assert "russia-dprk-treaty" not in lists(shipped, "Russische Eishockey-Junioren unterliegen Nordkorea in Pjöngjang")
    assert "russia-dprk-treaty" in lists(shipped, "Russland und Nordkorea unterzeichnen Abkommen über Sportaustausch")


def test_korean_phone_call_is_not_currency(shipped: Matcher) -> None:
    # 통화 is both a phone call and a currency; only the call is a tie between the two countries.
    assert not shipped.match("북한 통화정책 변화", "러시아 루블 결제 확대 전망")
    assert "russia-dprk-treaty" in lists(shipped, "북한 외무성 발표", "김정은이 러시아 대통령과 전화통화를 했다")


def test_exact_korean_term_allows_a_particle_but_not_a_longer_name():
    m = Matcher([wl({"li": [Term("리창", mode="exact")]})])
    assert m.match("리창은 평양에 갔다")
    assert m.match("리창 총리")
    assert not m.match("리창호 정찰총국장")


def test_every_match_explains_itself():
    config = load_config(ROOT / "watchlists")
    matches = Matcher(config.watchlists).match(
        "Nordkoreanische Soldaten kämpfen im Gebiet Kursk", "Kiew meldet Gefechte mit Truppen aus Nordkorea.")
    troops = next(m for m in matches if m.watchlist == "dprk-troops")
    assert 0 < troops.score <= 100
    assert "Nordkorea" in troops.terms
    hit = next(h for h in troops.hits if h.term == "Nordkorea")
    assert hit.field == "title" and hit.text == "Nordkoreanische" and hit.position == 0


def test_a_hit_is_explained_once_at_its_word_in_its_own_field():
    # `Kursk` and `Kursker` are one stem: the headline's Kursk was listed twice, and the summary's Kursk
    # was "word 9" (counting on from the headline) where a reader counts 5.
    m = Matcher([wl({"place": [Term("Kursk", aliases=("Kursker",))], "war": [Term("Krieg")]})])
    (match,) = m.match("Kursk Krieg", "eins zwei drei vier fünf Kursk")
    assert [(h.term, h.field, h.position) for h in match.hits] == [
        ("Kursk", "title", 0), ("Krieg", "title", 1), ("Kursk", "summary", 5)]


def test_backtest_shows_what_an_edit_changes(workdir: Path, feed_server):
    env = {"MEDIABOT_WATCHLISTS_DIR": str(workdir / "watchlists"), "MEDIABOT_STATE_DIR": str(workdir / "state")}
    write_feeds_yaml(workdir / "watchlists", [{"id": "n", "url": feed_server.url("/n.xml"), "name": "N", "lang": "de"}])
    feed_server.routes["/n.xml"] = Route(rss([
        {"title": "Gefechte im Gebiet Kursk dauern an", "guid": "1", "link": "https://x.example/1", "ago": 5},
        {"title": "Kursk: Stadtfest mit Feuerwerk", "guid": "2", "link": "https://x.example/2", "ago": 6},
    ]))
    assert run_cli(["poll", "--once"], env).returncode == 0
    edited = workdir / "edited" / "kursk-front.yaml"
    edited.parent.mkdir()
    text = (ROOT / "watchlists" / "kursk-front.yaml").read_text(encoding="utf-8")
    assert "\nexclude:\n" in text
    edited.write_text(text.replace("\nexclude:\n", "\nexclude:\n  - Gefechte\n"), encoding="utf-8")
    result = run_cli(["backtest", str(edited), "--since", "1d"], env)
    assert result.returncode == 0, result.stderr
    assert "- " in result.stdout and "Gefechte im Gebiet Kursk dauern an" in result.stdout
    assert "Stadtfest" not in result.stdout


def test_backtest_of_a_file_edited_in_place_compares_with_what_it_matched(workdir: Path, feed_server):
    """The admin edits the live file: the comparison is with what the list matched when the items came
    (it compared the file with itself and always said "0 new, 0 no longer")."""
    env = {"MEDIABOT_WATCHLISTS_DIR": str(workdir / "watchlists"), "MEDIABOT_STATE_DIR": str(workdir / "state")}
    write_feeds_yaml(workdir / "watchlists", [{"id": "n", "url": feed_server.url("/n.xml"), "name": "N", "lang": "de"}])
    feed_server.routes["/n.xml"] = Route(rss([
        {"title": "Gefechte im Gebiet Kursk dauern an", "guid": "1", "link": "https://x.example/1", "ago": 5},
    ]))
    assert run_cli(["poll", "--once"], env).returncode == 0
    live = workdir / "watchlists" / "kursk-front.yaml"
    live.write_text(live.read_text(encoding="utf-8").replace("\nexclude:\n", "\nexclude:\n  - Gefechte\n"),
                    encoding="utf-8")
    result = run_cli(["backtest", str(live), "--since", "1d"], env)
    assert result.returncode == 0, result.stderr
    assert "1 no longer" in result.stdout and "when each item arrived" in result.stdout
    assert "  - " in result.stdout and "Gefechte im Gebiet Kursk dauern an" in result.stdout
    renamed = workdir / "kursk-front-v2.yaml"
    renamed.write_text(live.read_text(encoding="utf-8"), encoding="utf-8")
    assert "no watchlist 'kursk-front-v2' is in force" in run_cli(["backtest", str(renamed)], env).stdout


@pytest.mark.parametrize(("since", "message"), [("0d", "more than 0"), ("1000000d", "at most"),
                                                 ("9999999999999999999999s", "at most")])
def test_backtest_rejects_a_since_it_cannot_use(workdir: Path, since: str, message: str):
    env = {"MEDIABOT_WATCHLISTS_DIR": str(ROOT / "watchlists"), "MEDIABOT_STATE_DIR": str(workdir / "state")}
    result = run_cli(["backtest", str(ROOT / "watchlists" / "kursk-front.yaml"), "--since", since], env)
    assert result.returncode == 1 and message in result.stderr, result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_backtest_without_a_usable_store_says_so_and_creates_nothing(tmp_path: Path):
    wl = str(ROOT / "watchlists" / "kursk-front.yaml")
    missing = tmp_path / "typo"
    result = run_cli(["backtest", wl], {"MEDIABOT_WATCHLISTS_DIR": str(ROOT / "watchlists"),
                                        "MEDIABOT_STATE_DIR": str(missing)})
    assert result.returncode == 4 and "no store at" in result.stderr
    assert not missing.exists()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "mediabot.db").write_text("garbage " * 100)
    result = run_cli(["backtest", wl], {"MEDIABOT_WATCHLISTS_DIR": str(ROOT / "watchlists"),
                                        "MEDIABOT_STATE_DIR": str(broken)})
    assert result.returncode == 4 and "cannot open the state store" in result.stderr
    assert "Traceback" not in result.stderr and "uncaught" not in result.stderr


def test_backtest_words_shows_what_a_stem_takes_that_nobody_wrote(workdir: Path, feed_server):
    """An admin about to ship a fuzzy term sees the unrelated word its stem takes (Putin -> putting),
    and not the forms written out as aliases."""
    env = {"MEDIABOT_WATCHLISTS_DIR": str(workdir / "watchlists"), "MEDIABOT_STATE_DIR": str(workdir / "state")}
    write_feeds_yaml(workdir / "watchlists", [{"id": "n", "url": feed_server.url("/n.xml"), "name": "N", "lang": "en"}])
    feed_server.routes["/n.xml"] = Route(rss([
        {"title": "Putin's envoy lands in Pyongyang", "guid": "1", "link": "https://x.example/1", "ago": 5},
        {"title": "North Korea putting troops on alert, Seoul says", "guid": "2", "link": "https://x.example/2",
         "ago": 6},
    ]))
    assert run_cli(["poll", "--once"], env).returncode == 0
    edited = workdir / "edited" / "ties.yaml"
    edited.parent.mkdir()
    edited.write_text("name: Ties\ndescription: d\ngroups:\n  dprk: [North Korea, Pyongyang]\n"
                      "  russia:\n    - term: Putin\n      aliases: [Putin's]\n", encoding="utf-8")
    result = run_cli(["backtest", str(edited), "--since", "1d", "--words"], env)
    assert result.returncode == 0, result.stderr
    putin_line = next(line for line in result.stdout.splitlines() if "line 6 Putin:" in line)
    assert putin_line.endswith("Putin: putting ×1")  # "Putin's" is written out, so it is not listed
    # both items match today: the headline about troops only through "putting"
    assert "would match 2" in result.stdout


def test_unless_vetoes_a_rule_only_when_all_its_groups_match():
    groups = {"place": [PLACE], "war": [Term("Krieg"), Term("Soldat")], "dprk": [DPRK], "thanks": [Term("dankt")]}
    m = Matcher([wl(groups, rules=(Rule(("place", "war"), unless=("dprk", "thanks")),))])
    assert m.match("Soldaten aus Nordkorea kämpfen bei Kursk")
    assert m.match("Kreml dankt Soldaten für Kursk")
    assert not m.match("Putin dankt Nordkorea für Soldaten in Kursk")


def test_unless_any_vetoes_a_rule_when_any_listed_group_matches():
    groups = {"dprk": [DPRK], "russia": [Term("Russland")], "war": [Term("Soldat")], "china": [Term("China")]}
    m = Matcher([wl(groups, rules=(Rule(("dprk", "russia"), unless_any=("war", "china")),))])
    assert m.match("Nordkorea und Russland vereinbaren Flüge")
    assert not m.match("Nordkorea schickt Soldaten nach Russland")
    assert not m.match("China, Russland und Nordkorea bei Parade")


def test_unless_title_vetoes_only_a_story_whose_headline_names_the_group():
    groups = {"dprk": [DPRK], "russia": [Term("Russland")], "china": [Term("China", mode="exact"), Term("Peking")]}
    m = Matcher([wl(groups, rules=(Rule(("dprk", "russia"), unless_title=("china",)),))])
    assert not m.match("Xi empfängt Kim in Peking", "Nordkorea sucht nach dem Pakt mit Russland neue Partner.")
    assert m.match("Nordkorea und Russland vereinbaren Flüge", "Der Beschluss fiel nach dem Treffen in Peking.")


def test_title_rule_needs_its_groups_in_the_headline():
    groups = {"dprk": [DPRK], "troops": [Term("Soldat")]}
    m = Matcher([wl(groups, rules=(Rule(("dprk", "troops"), title=("troops",)),))])
    assert m.match("Soldaten aus Nordkorea", "")
    assert not m.match("Nordkorea empfängt Delegation", "Die Soldaten standen Spalier.")


def _check(workdir: Path, watchlist_yaml: str) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """`mediabot check` on one feed and the watchlist t.yaml with this text."""
    write_feeds_yaml(workdir / "watchlists", [{"id": "a", "url": "http://127.0.0.1:1/x", "name": "A", "lang": "de"}])
    wl_path = workdir / "watchlists" / "t.yaml"
    wl_path.write_text(watchlist_yaml, encoding="utf-8")
    return wl_path, run_cli(["check"], {"MEDIABOT_WATCHLISTS_DIR": str(workdir / "watchlists")})


def test_check_rejects_a_title_group_missing_from_all(workdir):
    wl_path, result = _check(workdir, "description: d\ngroups:\n  a: [Kursk]\n  b: [Krieg]\nrules:\n"
                                      "  - all: [a]\n    title: [b]\n    unless: [c]\n")
    assert result.returncode == 2
    assert f"{wl_path}:7: t.rules#1.title: 'b' must also be in `all`" in result.stdout
    assert f"{wl_path}:8:" in result.stdout and "no group named 'c'" in result.stdout


def test_check_rejects_a_rule_that_could_never_hold(workdir):
    wl_path, result = _check(workdir, "description: d\ngroups:\n  a: [Kursk]\n  b: [Krieg]\n  c: [Film]\nrules:\n"
                                      "  - all: [a, b]\n    unless_any: [c, b]\n"
                                      "  - all: [a, b]\n    unless: [b, a]\n"
                                      "  - all: [a, b]\n    title: [a]\n    unless_title: [a]\n"
                                      "  - all: [a, b]\n    unless: [b, c]\n    unless_any: [c]\n")
    assert result.returncode == 2
    assert f"{wl_path}:8: t.rules#1.unless_any: 'b' is also in `all`, so the rule could never hold" in result.stdout
    assert f"{wl_path}:10: t.rules#2.unless: every group of it is also in `all`" in result.stdout
    assert f"{wl_path}:13: t.rules#3.unless_title: 'a' must be in the headline" in result.stdout
    assert "rules#4" not in result.stdout  # a veto that needs a group outside `all` can hold


def test_check_warns_about_a_short_capitalised_term_in_fuzzy_mode(workdir):
    wl_path, result = _check(workdir, "description: d\ngroups:\n  who: [Nordkorea]\n  what:\n"
                                      "    - term: Gefangene\n      aliases: [POW, prisoners]\n")
    assert result.returncode == 0  # legal, and the bot runs with it
    assert f"{wl_path}:5: warning: 'POW' is fuzzy" in result.stdout and "mode: acronym" in result.stdout
    assert Matcher(load_config(workdir / "watchlists").watchlists).match("Nordkorea: power cut", "")


def test_check_warns_about_a_term_cut_to_two_letters(workdir):
    wl_path, result = _check(workdir, "description: d\ngroups:\n  who: [Nordkorea]\n  what:\n"
                                      "    - term: Treibstoff\n      aliases: [Öl, Benzin]\n")
    assert result.returncode == 0
    assert f"{wl_path}:5: warning: 'Öl' is matched as 'ol'" in result.stdout and "mode: exact" in result.stdout
    # ... which is why: the stem takes an unrelated English word.
    assert Matcher(load_config(workdir / "watchlists").watchlists).match("Nordkorea", "The video is an old one.")
    _, clean_result = _check(workdir, "description: d\ngroups:\n  who: [Nordkorea]\n  what:\n"
                                      "    - {term: Öl, mode: exact, aliases: [Öls]}\n")
    assert "warning" not in clean_result.stdout
    # three letters left after stemming: мины -> мин, which takes минут (minutes)
    wl_path, result = _check(workdir, "description: d\ngroups:\n  where: [Курск]\n  war: [мины, обстрел]\n")
    assert f"{wl_path}:4: warning: 'мины' is matched as 'мин'" in result.stdout
    assert Matcher(load_config(workdir / "watchlists").watchlists).match("В Курске 10 минут шёл снег", "")


def test_check_warns_about_a_term_that_is_a_common_word_of_another_language(workdir):
    wl_path, result = _check(workdir, "description: d\ngroups:\n  place: [Kursk]\n  war:\n"
                                      "    - term: Krieg\n      aliases: [war, fighting]\n")
    assert result.returncode == 0
    assert f"{wl_path}:5: warning: 'war' also matches 'war'" in result.stdout and "'the war'" in result.stdout
    # ... which is why: the German past tense takes the English term.
    assert Matcher(load_config(workdir / "watchlists").watchlists).match("Kursk", "Das Wetter war schön.")
    _, clean_result = _check(workdir, "description: d\ngroups:\n  place: [Kursk]\n  war: [the war, fighting]\n")
    assert "warning" not in clean_result.stdout


def test_check_warns_about_a_group_no_rule_names(workdir):
    # A group left behind when its rule went: its terms look as if they counted, and never do.
    wl_path, result = _check(workdir, "description: d\ngroups:\n  place: [Kursk]\n  war: [Angriff]\n"
                                      "  history:\n    - term: Schlacht\nrules:\n  - all: [place, war]\n")
    assert result.returncode == 0
    assert f"{wl_path}:6: warning: group 'history' is named by no rule" in result.stdout
    assert not Matcher(load_config(workdir / "watchlists").watchlists).match("Schlacht bei Kursk", "")
    _, clean_result = _check(workdir, "description: d\ngroups:\n  place: [Kursk]\n  war: [Angriff]\n"
                                      "  history: [Schlacht]\nrules:\n  - all: [place, war]\n    unless: [history]\n")
    assert "warning" not in clean_result.stdout


def test_check_warns_about_a_spelling_listed_twice_in_one_term(workdir):
    wl_path, result = _check(workdir, "description: d\ngroups:\n  place: [Kursk]\n  war:\n"
                                      "    - {term: Angriff, aliases: [Angriffe, attack, Angriffe]}\n"
                                      "    - {term: Film, mode: exact, aliases: [film]}\n")
    assert result.returncode == 0
    assert f"{wl_path}:5: warning: 'Angriffe' is listed twice in this term; one can go" in result.stdout
    assert (f"{wl_path}:6: warning: 'film' is listed twice in this term (as 'Film': case does not count in exact "
            "mode)") in result.stdout
    # English "front" under one term and German "Front" under another is how lists are laid out: no warning.
    _, clean_result = _check(workdir, "description: d\ngroups:\n  place: [Kursk]\n  war:\n"
                                      "    - {term: Front, aliases: [Angriff]}\n"
                                      "    - {term: front, aliases: [attack]}\n")
    assert "warning" not in clean_result.stdout


def test_word_cache_stays_bounded_and_results_survive_its_clearing(monkeypatch):
    """A daemon's stream brings new names and numbers forever: the per-word caches are cleared at a bound,
    between items, so an item whose new words fill the cache still matches as a fresh matcher says."""
    import bot.match

    monkeypatch.setattr(bot.match, "_CACHE_LIMIT", 40)
    watchlists = [wl({"dprk": [DPRK], "place": [PLACE]})]
    long_running, sizes = Matcher(watchlists), []
    for n in range(120):
        fresh = " ".join(f"wort{n}x{k}" for k in range(15))  # 15 words never seen before, every item
        title = "Nordkoreanische Soldaten bei Kursk" if n % 3 == 0 else f"Wetter in Kursk {n}"
        got = [(m.watchlist, m.score, m.hits) for m in long_running.match(title, fresh)]
        want = [(m.watchlist, m.score, m.hits) for m in Matcher(watchlists).match(title, fresh)]
        assert got == want
        assert bool(got) is (n % 3 == 0)
        sizes.append(len(long_running._words.hits) + len(long_running._words.no_hit))
    assert max(sizes) <= 40 + 20  # the bound, plus at most one item's words before the next clear


def test_threads_sharing_one_matcher_get_every_match_while_its_word_cache_is_renewed(monkeypatch):
    """The pipeline matches feeds in up to four threads with one Matcher. When one thread renews the full
    word cache, another thread halfway through an item must still find its matches: an item matched
    wrongly is stored as seen and never alerts. (Cleared in place, a bound of 60 words gave exceptions
    and lost matches within a few hundred items.)"""
    import json
    import sys
    import threading

    import bot.match

    rows = [json.loads(line) for line in (ROOT / "bench" / "corpus" / "matching.jsonl").read_text().splitlines()]
    items = [(r["title"], r["summary"]) for r in rows[:200]]
    config = load_config(ROOT / "watchlists")
    want = [[m.watchlist for m in Matcher(config.watchlists).match(t, s)] for t, s in items]
    monkeypatch.setattr(bot.match, "_CACHE_LIMIT", 60)
    shared = Matcher(config.watchlists)
    problems: list[str] = []

    def work(order: list[int]) -> None:
        for i in order:
            try:
                got = [m.watchlist for m in shared.match(*items[i])]
            except Exception as exc:  # a crash is a lost poll
                problems.append(f"{i}: {exc!r}")
                continue
            if got != want[i]:
                problems.append(f"{i}: {got} instead of {want[i]}")

    n = len(items)
    orders = [sorted(range(n), key=lambda i, k=k: (i * (k + 7919)) % n) for k in range(4)]  # each its own order
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often
    try:
        threads = [threading.Thread(target=work, args=(order,)) for order in orders]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert sum(map(bool, want)) > 80  # half the corpus matches something
    assert problems == []


def test_words_taken_are_listed_as_written_not_folded():
    """`backtest --words` shows the words an admin reads in the feeds: "kämpfen", "курской", not the
    folded keys "kaempfen", "курскои"; and which alias took a word (with ten aliases, the term's line
    left the admin guessing)."""
    m = Matcher([wl({"place": [PLACE], "war": [Term("Kampf")]})])
    taken = m.words_taken([("Schwere Kämpfe bei Курской области", "Nordkoreaner KÄMPFEN im Kursker Gebiet.")])
    words = {term.term: set(counts) for (_, term), counts in taken.items()}
    assert words["Kursk"] == {"курской (by Курск)", "kursker"}
    assert words["Kampf"] == {"kämpfe", "kämpfen"}


def test_check_warns_about_a_spelling_that_is_also_excluded(workdir):
    wl_path, result = _check(workdir, "description: d\ngroups:\n  place: [Kursk]\n  war:\n"
                                      "    - {term: Angriff, aliases: [U-Boot]}\nexclude: [u-boot, Schlacht]\n")
    assert result.returncode == 0
    assert f"{wl_path}:5: warning: 'U-Boot' is also in exclude: (line 6)" in result.stdout
    # ... which is why: the spelling can only ever veto.
    assert not Matcher(load_config(workdir / "watchlists").watchlists).match("U-Boot Kursk gehoben", "")
    _, clean_result = _check(workdir, "description: d\ngroups:\n  place: [Kursk]\n  war: [Angriff]\n"
                                      "exclude: [U-Boot]\n")
    assert "warning" not in clean_result.stdout


def test_an_explanation_quotes_the_words_as_written():
    """`where` shows what an editor can find in the text: "KN-23s" and "DPRK's", not the cleaned "KN 23s", "DPRKs"."""
    kn23 = Term("KN-23", mode="acronym", aliases=("DPRK",))
    m = Matcher([wl({"weapon": [kn23], "place": [Term("Charkiw", aliases=("Kharkiv",))]})])
    (match,) = m.match("DPRK's KN-23s hit ‘Kharkiv’, Kyiv says", "Kim’s missiles again")
    assert [(h.text, h.field, h.position) for h in match.hits] == [
        ("DPRK's", "title", 0), ("KN-23s", "title", 1), ("Kharkiv", "title", 4)]


@pytest.mark.parametrize(("title", "summary"), [
    ("25 Jahre nach der Kursk-Katastrophe: Angehörige erinnern an die Toten",
     "Das russische Atom-U-Boot sank im August 2000 in der Barentssee nach der Explosion eines Torpedos. Die Armee "
     "lehnte Hilfe aus dem Ausland tagelang ab."),
    ("Годовщина трагедии «Курска»: в Мурманске вспомнили погибших",
     "В августе 2000 года в Баренцевом море затонула атомная подводная лодка. Военные и родственники возложили цветы."),
    ("Kursk tragedy, 25 years on: Putin's first crisis still haunts families",
     "The nuclear submarine went down in the Barents Sea in August 2000 after a torpedo blast; the army refused "
     "foreign help for days."),
])
def test_the_kursk_submarine_told_in_a_lead_is_not_front_news(title, summary):
    """The submarine vetoes the Kursk list only in a headline (Zelensky's speech recalls it in its lead); its
    anniversaries and films, whose leads tell the disaster, must still stay out."""
    matcher = Matcher(load_config(ROOT / "watchlists").watchlists)
    assert "kursk-front" not in [m.watchlist for m in matcher.match(title, summary)]


def test_a_front_story_that_recalls_the_submarine_in_its_lead_alerts():
    matcher = Matcher(load_config(ROOT / "watchlists").watchlists)
    found = matcher.match("Selenskyj: Kursk war Putins Anfang – und wird sein Ende",
                          "Vor 24 Jahren sei der Untergang des U-Boots der Beginn von Putins Herrschaft gewesen, nun "
                          "stehe Kursk für die Katastrophe seines Krieges. Die ukrainische Armee kontrolliere 1000 "
                          "Quadratkilometer der russischen Region.")
    assert "kursk-front" in [m.watchlist for m in found]


def test_an_alert_shows_a_word_once_when_a_longer_phrase_holds_it():
    """Two terms, 'Африканський корпус' and 'Африканський', took the same words: the alert listed
    'Африканський корпус, Африканський'."""
    from bot.models import Match, TermHit

    hits = (TermHit("Africa Corps", "Африканський корпус", "title", 2, 100.0),
            TermHit("Africa", "Африканський", "title", 2, 100.0),
            TermHit("Mali", "Малі", "title", 5, 100.0), TermHit("Mali", "малі", "summary", 1, 100.0),
            TermHit("Corps", "Corpus", "summary", 4, 100.0))
    assert Match("w", 100.0, hits).words == ["Африканський корпус", "Малі", "Corpus"]


def test_match_explain_tells_a_veto_from_no_hit_and_agrees_with_match(tmp_path):
    """An admin checking hard negatives saw `"matches": []` for a story the veto kept out and for one with no
    hit at all; --explain says which words each group took and why each rule failed."""
    import json

    write_feeds_yaml(tmp_path, [{"id": "a", "url": "https://example.org/a.xml"}])
    (tmp_path / "iran.yaml").write_text(
        "description: Iranian drones for Russia\ngroups:\n  iran: [Iran]\n  drones: [Drohnen, Shahed]\n"
        "  russia: [Russland]\n  israel: [Israel]\nrules:\n  - all: [iran, drones, russia]\n"
        "    unless_title: [israel]\n  - all: [iran, drones]\n    near: 3\n    title: [drones]\n", encoding="utf-8")
    items = [{"id": 1, "title": "Iran greift Israel mit Drohnen an", "summary": "Auch Russland verurteilt es."},
             {"id": 2, "title": "Wetter: Sonne am Wochenende"},
             {"id": 3, "title": "Iran liefert Russland neue Shahed-Drohnen"},
             {"id": 4, "title": "Iran: Lage ruhig", "summary": "Über Drohnen wurde nicht gesprochen, heißt es."}]
    stdin = "".join(json.dumps(i) + "\n" for i in items)
    result = run_cli(["match", "--explain"], {"MEDIABOT_WATCHLISTS_DIR": str(tmp_path)}, input=stdin)
    assert result.returncode == 0, result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    [vetoed] = out[0]["why"]
    assert vetoed["matched"] is False and vetoed["groups"]["israel"] == ["Israel"]
    assert vetoed["rules"][0] == {"line": 8, "all": ["iran", "drones", "russia"], "held": False,
                                  "why": "unless_title: israel in the headline"}
    assert out[1]["why"] == []  # nothing hit: nothing to explain
    assert out[2]["why"][0]["matched"] is True and out[2]["watchlists"] == ["iran"]
    assert [r.get("why") for r in out[3]["why"][0]["rules"]] == [
        "no hit for russia", "title: drones not in the headline"]
    # explain() and match() agree on every corpus item (the explanation repeats _decide's tests)
    m = Matcher(load_config(ROOT / "watchlists").watchlists)
    corpus = [json.loads(line) for line in (ROOT / "bench" / "corpus" / "matching.jsonl").read_text().splitlines()]
    for r in corpus:
        assert ({x.watchlist for x in m.match(r["title"], r["summary"])}
                == {x["watchlist"] for x in m.explain(r["title"], r["summary"]) if x["matched"]}), r["title"]


@pytest.mark.parametrize(("title", "written"), [
    ("L'Iran livre des drones à la Russie", "Iran"),
    ("Frappes sur l’Ukraine : Moscou accuse", "Ukraine"),
    ("Des soldats d’Ukraine capturés", "Ukraine"),
    ("Nuovi droni dell'Iran per Mosca", "Iran"),
    ("Attacco contro l’Iran: nell'Ucraina si teme", "Iran"),
    ("'L'Iran attacca', scrive il giornale", "Iran"),  # after an opening quote
])
def test_french_and_italian_elision_is_read_as_two_words(title, written):
    """A French or Italian feed writes the article onto the name (l'Iran, d’Ukraine, dell'Iran): the name
    still matches, and the explanation quotes it as written, without the article."""
    matcher = Matcher([wl({"country": [Term("Iran"), Term("Ukraine")]})])
    [match] = matcher.match(title)
    assert [h.text for h in match.hits] == [written]


@pytest.mark.parametrize("title", ["Kim's envoy in Moscow", "В'ячеслав Гладков", "rock'n'roll in Pyongyang"])
def test_other_apostrophes_still_join_words(title):
    """Only the French and Italian particles split off: a possessive, a Ukrainian apostrophe or a word
    with an apostrophe inside stays one word, as before."""
    terms = [Term("Kims"), Term("Вячеслав"), Term("rocknroll")]
    [match] = Matcher([wl({"x": terms})]).match(title)
    assert len(match.hits) == 1 and match.hits[0].text == title.split()[0]


def test_an_acronym_after_an_elided_article_matches():
    [match] = Matcher([wl({"nato": [Term("OTAN", mode="acronym")]})]).match("L'OTAN renforce son flanc est")
    assert match.hits[0].text == "OTAN"


# A foreign desk's own list: names written in the feed's own script, no aliases for their forms.
FOREIGN = {
    "korea": [Term("北朝鮮"), Term("朝鲜"), Term("كوريا الشمالية"), Term("צפון קוריאה")],
    "iran": [Term("イラン"), Term("伊朗"), Term("إيران"), Term("ایران"), Term("איראן"), Term("İran")],
    "crimea": [Term("Kırım"), Term("Istanbul")],
    "ukraine": [Term("زيلينسكي")],
}


@pytest.mark.parametrize(("title", "group", "shown"), [
    # Chinese and Japanese run a clause together: the term is found inside it, quoted with a character either side
    ("米国務省、北朝鮮兵のウクライナ派遣を確認", "korea", "北朝鮮兵"),
    ("テヘランで爆発、イラン政府が声明", "iran", "イラン政"),
    ("俄方证实朝鲜工兵已抵达库尔斯克", "korea", "实朝鲜工"),
    ("美国宣布对伊朗实施新制裁", "iran", "对伊朗实"),
    # Arabic and Hebrew glue "and", "to", "in" to the name
    ("عقوبات أوروبية جديدة على طهران ودعم لإيران من موسكو", "iran", "لإيران"),
    ("سيول تتهم بيونغ يانغ وكوريا الشمالية تنفي", "korea", "وكوريا الشمالية"),
    ("פיצוץ בנמל באיראן", "iran", "באיראן"),
    ("שגריר רוסיה נפגש עם שגריר לצפון קוריאה", "korea", "לצפון קוריאה"),
    # Arabic and Persian spelling variants: no hamza, vowel points, the stretching tatweel, Arabic yeh
    ("مسؤول: ايران لن تتراجع", "iran", "ايران"),
    ("عاجل | إِيرَان تعلن حالة التأهب", "iran", "إِيرَان"),
    ("إيـــران ترد على التقارير", "iran", "إيـــران"),
    ("گزارش تازه درباره برنامه ايران", "iran", "ايران"),
    ("زيلينسكى يطالب بمزيد من الدعم", "ukraine", "زيلينسكى"),  # Egyptian outlets write a final yeh as ى
    # Turkish İ and ı in capitals and in other languages' feeds
    ("SON DAKİKA: KIRIM KÖPRÜSÜNDE PATLAMA", "crimea", "KIRIM"),
    ("Ankara: İran'a yeni yaptırım yok", "iran", "İran'a"),
    ("Gefangenenaustausch: nächste Runde in İstanbul", "crimea", "İstanbul"),
])
def test_names_in_other_scripts_match_as_their_writers_write_them(title, group, shown):
    """Feeds in Japanese, Chinese, Arabic, Persian, Hebrew and Turkish (`lang:` takes any language): a
    list's name matches in the forms those languages write it, and the alert quotes it as written."""
    matcher = Matcher([Watchlist(id="desk", name="desk", description="d",
                                 groups={k: tuple(v) for k, v in FOREIGN.items()},
                                 rules=tuple(Rule((g,)) for g in FOREIGN))])
    [match] = matcher.match(title)
    assert {(h.term in {t.term for t in FOREIGN[group]}, h.text) for h in match.hits} == {(True, shown)}


@pytest.mark.parametrize("title", [
    "北京で首脳会談",  # 北 alone is not 北朝鮮
    "ومن جهة أخرى قالت الحكومة",  # و + a word that is no name
    "Istanbuler Konvention",
    "העזה שלו הפתיעה את כולם",  # "the daring", not ה + עזה (Gaza): a base of three letters takes no prefix
    "الاجتماع على مستوى الوزراء",  # على (on) is not the name علي
])
def test_other_scripts_do_not_take_words_that_are_not_the_name(title):
    matcher = Matcher([wl({"korea": FOREIGN["korea"], "iran": FOREIGN["iran"],
                           "names": [Term("עזה"), Term("علي")]},
                          rules=(Rule(("korea",)), Rule(("iran",)), Rule(("names",))))])
    assert not matcher.match(title)


def test_a_chinese_or_japanese_lead_ends_at_the_second_full_stop():
    """`title+lead` reads two sentences in Japanese as in German: a background third sentence counts not."""
    groups = {"korea": [Term("北朝鮮")], "russia": [Term("ロシア")]}
    teaser = "北朝鮮が弾道ミサイルを発射した。日本海に落下したとみられる。北朝鮮はロシアとの協力を深めている。"
    assert Matcher([wl(groups)]).match("ミサイル発射", teaser)
    assert not Matcher([wl(groups, fields="title+lead")]).match("ミサイル発射", teaser)


def test_a_chinese_term_inside_a_longer_word_is_quoted_with_what_surrounds_it():
    """美国 (the USA) inside 南美国家 (South American countries): the match is a known limit of matching without
    word boundaries, and the alert shows the characters around the term so the reader sees it."""
    [match] = Matcher([wl({"us": [Term("美国")]})]).match("南美国家领导人举行峰会")
    assert [h.text for h in match.hits] == ["南美国家"]


def test_a_chinese_quotation_that_ends_a_sentence_ends_it():
    """Chinese news closes a quoted sentence with 。” and goes on at once: that ends the sentence (a rule for
    the Japanese 。」と made the lead run to the end of the teaser)."""
    groups = {"korea": [Term("朝鲜")], "russia": [Term("俄罗斯")]}
    teaser = "发言人说：“朝鲜将继续试射导弹。”日本表示抗议。第三句话在这里。朝鲜与俄罗斯加强合作。"
    assert Matcher([wl(groups)]).match("导弹试射", teaser)
    assert not Matcher([wl(groups, fields="title+lead")]).match("导弹试射", teaser)


def test_a_japanese_quotation_inside_a_sentence_does_not_end_the_lead():
    groups = {"korea": [Term("北朝鮮")], "russia": [Term("ロシア")]}
    teaser = "政府は「北朝鮮の発射を確認した。」と発表した。ロシアとの関係も協議した。三つ目の文。"
    assert Matcher([wl(groups, fields="title+lead")]).match("政府発表", teaser)
