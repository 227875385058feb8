"""One story, one alert: canonical links, identity keys, and story folding across outlets and restarts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.dedup import StoryIndex, canonical_link, identity_keys, item_from_record
from tests.conftest import run_cli, write_feeds_yaml
from tests.servers import Route, rss


@pytest.mark.parametrize(("a", "b"), [
    ("http://WWW.Example.org/a/b/?utm_source=rss&utm_medium=feed", "https://example.org/a/b"),
    ("https://example.org/a#ref=rss", "https://example.org/a"),
    ("https://m.example.org/a?fbclid=x&gclid=y&id=3", "https://example.org/a?id=3"),
    ("https://example.org/amp/story-1", "https://example.org/story-1"),
    ("https://amp.example.org/story-1.amp.html", "https://example.org/story-1.html"),
    ("https://example.org:443/a?b=2&a=1", "https://example.org/a?a=1&b=2"),
    # one URL spelled several ways (RFC 3986 6.2.2, IDNA): raw or escaped umlaut, escape case, %7E
    ("https://example.org/soldaten-räumen-minen", "https://example.org/soldaten-r%C3%A4umen-minen"),
    ("https://example.org/r%c3%a4umen", "https://example.org/r%C3%A4umen"),
    ("https://münchen.de/a", "https://xn--mnchen-3ya.de/a"),
    ("https://example.org/a%7Eb", "https://example.org/a~b"),
    # Deutsche Welle tags each feed's links: one article in two DW feeds was two items and "also: DW"
    ("https://www.dw.com/de/a-70000000?maca=de-rss-de-top-1016-rdf", "https://dw.com/de/a-70000000?maca=de-rss-de-all"),
])
def test_canonical_link_folds_tracking_and_variants(a, b):
    assert canonical_link(a) == canonical_link(b)


@pytest.mark.parametrize(("a", "b"), [
    ("https://example.org/a?id=3", "https://example.org/a?id=4"),
    ("https://example.org/a", "https://example.org/b"),
    # single-page sites route by the fragment: it names the article (both were https://kyiv-sp.example/)
    ("https://kyiv-sp.example/#!/news/4711", "https://kyiv-sp.example/#!/news/4712"),
    ("https://kyiv-sp.example/#/story/77", "https://kyiv-sp.example/#/story/78"),
    # query values that are not UTF-8 (both were K%EF%BF%BDse)
    ("https://example.org/s?q=K%E4se", "https://example.org/s?q=K%F6se"),
    # IPv6 hosts keep their brackets (both were https://2001:db8::1:8080/a)
    ("https://[2001:db8::1]:8080/a", "https://[2001:db8::1:8080]/a"),
])
def test_canonical_link_keeps_what_names_the_article(a, b):
    assert canonical_link(a) != canonical_link(b)


@pytest.mark.parametrize("url", ["https://port.example:8o80/news/1", "https://example.org:99999/a", "https://[::1/x"])
def test_canonical_link_of_a_broken_url_is_the_url_as_written(url):
    assert canonical_link(url) == url  # (raised ValueError, which failed the whole feed on every poll)


def test_one_broken_link_does_not_cost_the_rest_of_the_feed(workdir, feed_server, telegram):
    env = _two_outlets(workdir, feed_server, telegram, "dprk-troops", -100778, ("Outlet A", "Outlet B"))
    feed_server.routes["/a.xml"] = Route(rss([
        {"title": "Nordkoreanische Soldaten an der Front in Kursk", "link": "https://port.example:8o80/news/1",
         "description": "Kiew meldet Gefechte mit Truppen aus Nordkorea.", "ago": 3},
        {"title": "Nordkorea schickt weitere Soldaten nach Russland", "link": "https://a.example/2",
         "description": "Seoul: Pjöngjang entsendet zusätzliche Truppen für Russlands Krieg.", "ago": 2},
    ]))
    feed_server.routes["/b.xml"] = Route(rss([]))
    result = run_cli(["poll", "--once"], env)
    assert result.returncode == 0, result.stderr
    assert "internal error" not in result.stdout + result.stderr
    assert len(telegram.sent_to(-100778)) == 2


def test_articles_of_a_site_that_routes_by_fragment_are_not_one_item(workdir, feed_server, telegram):
    env = _two_outlets(workdir, feed_server, telegram, "dprk-troops", -100779, ("Outlet A", "Outlet B"))
    first = {"title": "Nordkoreanische Soldaten an der Front in Kursk", "link": "https://sp.example/#!/news/4711",
             "description": "Kiew meldet Gefechte mit Truppen aus Nordkorea.", "ago": 30}
    feed_server.routes["/a.xml"] = Route(rss([first]))
    feed_server.routes["/b.xml"] = Route(rss([]))
    assert run_cli(["poll", "--once"], env).returncode == 0
    feed_server.routes["/a.xml"] = Route(rss([first, {
        "title": "Pjöngjang bestätigt Tod von 200 Soldaten in Russland", "link": "https://sp.example/#!/news/4712",
        "description": "Nordkorea räumt erstmals Verluste seiner Truppen im Krieg gegen die Ukraine ein.", "ago": 1}]))
    assert run_cli(["poll", "--once"], env).returncode == 0
    assert len(telegram.sent_to(-100779)) == 2


def test_identity_keys_share_link_across_feeds_of_one_outlet():
    one = identity_keys("feed-a", "guid-1", canonical_link("https://example.org/x?utm_source=a"), "T")
    two = identity_keys("feed-b", "other-guid", canonical_link("https://www.example.org/x/"), "T")
    assert set(one) & set(two)


def test_identity_override_title_link_ignores_broken_guids():
    a = identity_keys("f", "random-1", "https://example.org/x", "Title", identity="title_link")
    b = identity_keys("f", "random-2", "https://example.org/x", "Title", identity="title_link")
    assert a == b


def _rec(i, title, summary, lang="de", minutes=0):
    when = datetime(2025, 1, 1, 12, tzinfo=UTC) + timedelta(minutes=minutes)
    return item_from_record({"id": i, "title": title, "summary": summary, "lang": lang, "published": when.isoformat()})


def test_agency_copy_folds_but_a_different_event_with_same_actors_stays_apart():
    index = StoryIndex()
    first = _rec("a", "Nordkorea schickt weitere 3000 Soldaten nach Russland",
                 "Südkoreas Geheimdienst: Pjöngjang hat im Januar und Februar weitere Truppen "
                 "in das Gebiet Kursk verlegt.")
    copy = _rec("b", "Ukraine-Krieg: Nordkorea schickt weitere 3000 Soldaten nach Russland",
                "Südkoreas Geheimdienst zufolge hat Pjöngjang im Januar und Februar weitere Truppen "
                "ins Gebiet Kursk verlegt.",
                minutes=20)
    other = _rec("c", "Kim Jong Un besucht russische Botschaft in Pjöngjang",
                 "Nordkoreas Machthaber legte zum Jahrestag Blumen nieder und lobte die Freundschaft mit Russland.",
                 minutes=40)
    assert index.check(first, "a") is None
    assert index.check(copy, "b") == "a"
    assert index.check(other, "c") is None


def test_a_delivery_of_other_weapons_in_the_same_headline_template_stays_apart():
    """"sends more artillery" under "sends 3,000 more soldiers": the same template, another delivery; it only
    showed as "also: DW" under the troop alert (hunt11b)."""
    index = StoryIndex()
    index.check(_rec("a", "Bericht: Nordkorea schickt weitere 3000 Soldaten nach Russland",
                     "Nordkorea hat laut Seouls Geheimdienst weitere 3000 Soldaten nach Russland verlegt. Sie "
                     "sollen im Gebiet Kursk kämpfen."), "a")
    guns = _rec("b", "Nordkorea schickt weitere Haubitzen nach Russland",
                "Nordkorea hat laut Kiew weitere 120 Haubitzen und Raketenwerfer nach Russland gebracht. Sie "
                "sollen im Gebiet Kursk eingesetzt werden.", minutes=30)
    assert index.check(guns, "b") is None
    copy = _rec("c", "Nordkorea schickt weitere Soldaten nach Russland",
                "Nordkorea hat laut Seouls Geheimdienst weitere 3000 Soldaten nach Russland verlegt. Sie sollen "
                "im Gebiet Kursk kämpfen.", minutes=40)
    assert index.check(copy, "c") == "a"  # a copy that drops the figure is still a copy


def test_items_of_other_languages_do_not_change_what_folds_in_one():
    """Word frequencies are per language; the index size in the IDF counted every language, so a busy
    Korean and Russian desk made English words look rarer and folded a new English story into another."""
    troops = _rec("a", "North Korea sends 3,000 more troops to Russia, Seoul says",
                  "North Korea has dispatched about 3,000 additional troops to Russia, South Korea's spy agency "
                  "said. They are to fight in the Kursk region.", lang="en")
    summons = _rec("b", "Seoul summons Russian ambassador over North Korean troop deployment",
                   "South Korea summoned Russia's ambassador to protest against the deployment of North Korean "
                   "troops to the Kursk region.", lang="en", minutes=90)
    others = [_rec(f"x{i}", f"Сообщение {i}: погода в регионе {i * 7}", f"Новость номер {i} о погоде и дорогах.",
                   lang="ru", minutes=-i) for i in range(40)]
    alone = StoryIndex()
    alone.check(troops, "a")
    busy = StoryIndex()
    for item in others:
        busy.check(item, item.key)
    busy.check(troops, "a")
    assert alone.check(summons, "b") is None and busy.check(summons, "b") is None


def test_same_day_report_with_the_same_actors_stays_apart():
    """Kim arrives in Beijing in the morning; Putin meets him there in the afternoon: two alerts."""
    index = StoryIndex()
    index.check(_rec("a", "Kim Jong Un mit Tochter in Peking eingetroffen",
                     "Nordkoreas Machthaber ist mit seinem Sonderzug in Peking angekommen, begleitet von seiner "
                     "Tochter Kim Ju Ae. Er will an der Militärparade zum Kriegsende teilnehmen."), "a")
    meeting = _rec("b", "Putin und Kim treffen sich in Peking",
                   "Nach der Militärparade haben Kremlchef Wladimir Putin und Nordkoreas Machthaber Kim Jong Un in "
                   "Peking Gespräche geführt. Putin dankte für die Hilfe nordkoreanischer Soldaten.", minutes=7 * 60)
    assert index.check(meeting, "b") is None


def test_items_with_different_headline_figures_stay_apart():
    index = StoryIndex()
    index.check(_rec("a", "Ukraine trifft zweite Brücke über den Seim im Gebiet Kursk",
                     "Die Luftwaffe meldet einen Treffer bei Swannoje im Kreis Gluschkowo."), "a")
    third = _rec("b", "Ukraine zerstört dritte Seim-Brücke bei Kursk",
                 "Kiew spricht von einer Pufferzone; Russland meldet Beschuss im Kreis Gluschkowo.", minutes=120)
    assert index.check(third, "b") is None


def test_a_headline_announcing_more_of_the_same_is_the_next_development():
    """"Three more villages" the next day is news; a copy that says "more" where the first report's teaser
    did too is not."""
    index = StoryIndex()
    index.check(_rec("a", "Russland meldet Rückeroberung von drei Dörfern im Gebiet Kursk",
                     "Das Verteidigungsministerium nennt Wiktorowka, Nikolajewka und Staraja Sorotschina; die "
                     "Ukraine äußert sich nicht."), "a")
    more = _rec("b", "Kursk: Russland meldet Rückeroberung von drei weiteren Dörfern",
                "Das Verteidigungsministerium nennt Malaja Loknja, Tscherkasskoje Poretschnoje und Kossiza; die "
                "Ukraine äußert sich nicht.", minutes=24 * 60)
    assert index.check(more, "b") is None
    index = StoryIndex()
    index.check(_rec("a", "Russland meldet Rückeroberung von Pogrebki und Orlowka",
                     "Das Verteidigungsministerium in Moskau erklärt, zwei weitere Dörfer nördlich von Sudscha "
                     "im Gebiet Kursk zurückgewonnen zu haben."), "a")
    copy = _rec("b", "Moskau meldet zwei weitere Dörfer bei Sudscha zurückerobert",
                "Das Verteidigungsministerium in Moskau erklärt, Pogrebki und Orlowka nördlich von Sudscha im "
                "Gebiet Kursk zurückgewonnen zu haben.", minutes=30)
    assert index.check(copy, "b") == "a"


def test_korean_more_with_a_figure_is_the_next_development_but_additional_details_fold():
    """Korean 추가 is "more" beside a figure (two more villages retaken: news) and "additional" without one
    (an agency copy promising additional details: the same story)."""
    index = StoryIndex()
    index.check(_rec("a", "러시아 \"쿠르스크 최대 도시 수자 탈환\"",
                     "러시아 국방부는 쿠르스크주 수자를 우크라이나군으로부터 되찾았다고 13일 밝혔다. "
                     "수자는 우크라이나군이 지난해 8월 점령한 쿠르스크주 최대 도시다.", lang="ko"), "a")
    more = _rec("b", "러시아 \"쿠르스크 수자 인근 마을 2곳 추가 탈환\"",
                "러시아 국방부는 쿠르스크주 수자 북쪽과 서쪽의 마을 두 곳을 우크라이나군으로부터 "
                "되찾았다고 15일 밝혔다. 수자 탈환 이틀 만이다.", minutes=2 * 24 * 60, lang="ko")
    assert index.check(more, "b") is None
    index = StoryIndex()
    index.check(_rec("a", "국정원 \"북한군 쿠르스크 배치 완료…교전 중인 듯\"",
                     "국가정보원은 러시아에 파병된 북한군이 쿠르스크 지역 배치를 마치고 전투에 참여하고 "
                     "있는 것으로 보인다고 13일 밝혔다. 국정원은 관련 첩보를 분석하고 있다.", lang="ko"), "a")
    copy = _rec("b", "국정원 \"북한군, 쿠르스크 전투 참여\"…추가 첩보 분석 중",
                "국가정보원은 러시아에 파병된 북한군이 쿠르스크 지역 배치를 마치고 전투에 참여하고 "
                "있는 것으로 보인다며 관련 첩보를 분석하고 있다고 13일 밝혔다.", minutes=20, lang="ko")
    assert index.check(copy, "b") == "a"


def test_same_headline_about_someone_else_stays_apart():
    """A template headline with another actor is another story, however much else the two share."""
    index = StoryIndex()
    index.check(_rec("a", "Xi gratuliert Kim zur Wiederwahl als Parteichef",
                     "Chinas Staatschef hat Nordkoreas Machthaber zur Wiederwahl als Generalsekretär der "
                     "Arbeiterpartei beglückwünscht und eine engere Zusammenarbeit angeboten."), "a")
    other = _rec("b", "Medwedew gratuliert Kim zur Wiederwahl als Parteichef",
                 "Der Vizechef des russischen Sicherheitsrats hat Nordkoreas Machthaber zur Wiederwahl als "
                 "Generalsekretär der Arbeiterpartei beglückwünscht.", minutes=90)
    assert index.check(other, "b") is None


def test_a_copy_that_swaps_a_word_it_also_uses_still_folds():
    index = StoryIndex()
    index.check(_rec("a", "Austin cites evidence of North Korean soldiers on Russian soil",
                     "The US defense secretary said Washington has evidence of North Korean troops in Russia, "
                     "adding that their mission was not yet clear.", lang="en"), "a")
    copy = _rec("b", "Austin cites evidence of North Korean troops on Russian soil",
                "The US defense secretary said Washington has evidence of North Korean troops in Russia; "
                "what they are doing there is not yet clear.", lang="en", minutes=6)
    assert index.check(copy, "b") == "a"


def test_function_words_do_not_pick_candidates_in_a_small_index():
    """A fresh index has seen "than" once and "Belousov" twice; the name must still find the story
    (a low threshold here: the test is about finding the candidate, not about where to draw the line)."""
    index = StoryIndex(threshold=0.2)
    lines = [("a", "Belousov lands in Pyongyang for talks with North Korean leadership",
              "Russia's defence minister Andrei Belousov has arrived in North Korea to meet its leaders."),
             ("b", "Russia's defence minister Belousov lands in Pyongyang",
              "Andrei Belousov arrived for talks as both countries deepen their alignment."),
             ("c", "Markets: more shares are lower than on Monday", "Traders are more careful than before."),
             ("d", "Belousov visits Pyongyang as North Korean troops fight in Kursk",
              "The trip follows Putin's June visit and comes as more than 10,000 troops are believed in Russia.")]
    results = [index.check(_rec(i, t, s, lang="en", minutes=n * 30), i) for n, (i, t, s) in enumerate(lines)]
    assert results == [None, "a", None, "a"]


def test_agency_text_under_another_outlets_headline_folds():
    """The headlines share little, but the later teaser is nearly all words of the first: a copy."""
    index = StoryIndex()
    index.check(_rec("a", "Moskau und Teheran besiegeln Partnerschaft",
                     "Russland und Iran haben einen Vertrag über eine umfassende strategische Partnerschaft "
                     "unterzeichnet. Die Präsidenten Putin und Peseschkian setzten ihre Unterschriften im Kreml "
                     "unter das Abkommen."), "a")
    copy = _rec("b", "Putin und Peseschkian unterzeichnen Vertrag über strategische Partnerschaft",
                "Russland und Iran haben im Kreml einen Vertrag über eine umfassende strategische Partnerschaft "
                "unterzeichnet. Er regelt Handel, Verkehr und militärische Zusammenarbeit.", minutes=15)
    assert index.check(copy, "b") == "a"


@pytest.mark.parametrize(("lang", "first", "second", "background"), [
    ("de", ("Ukraine nimmt zwei nordkoreanische Soldaten gefangen",
            "Ukrainische Spezialkräfte haben im Gebiet Kursk zwei verwundete Nordkoreaner gefangen genommen, teilte "
            "Selenskyj mit."),
     ("Nordkorea liefert Haubitzen vom Typ Koksan an Russland",
      "Nach Angaben aus Seoul hat Pjöngjang selbstfahrende Haubitzen vom Typ Koksan an die russische Armee geliefert."),
     " Nordkorea hat nach Erkenntnissen westlicher Geheimdienste rund 11.000 Soldaten nach Russland entsandt, die im "
     "Gebiet Kursk gegen ukrainische Truppen kämpfen."),
    ("en", ("North Korean troops pulled back from Kursk front",
            "North Korean units have been withdrawn from the front line after heavy losses, Ukrainian intelligence "
            "said."),
     ("Kim Jong Un promises more missiles for Russia after meeting Shoigu",
      "Kim pledged to supply further ballistic missiles to Moscow during talks with Russia's security council "
      "secretary in Pyongyang."),
     " North Korea has sent about 11,000 soldiers to Russia, according to Western intelligence, where they fight "
     "Ukrainian troops in the Kursk region."),
])
def test_two_reports_ending_on_the_same_background_sentence_stay_apart(lang, first, second, background):
    """Agencies close different reports with the same background sentence; in a short teaser it is half of
    the words, which made the copy rule fold a prisoner report and a howitzer delivery into one alert."""
    index = StoryIndex()
    assert index.check(_rec("a", first[0], first[1] + background, lang=lang), "a") is None
    assert index.check(_rec("b", second[0], second[1] + background, lang=lang, minutes=120), "b") is None


def test_other_language_is_not_folded():
    index = StoryIndex()
    first = _rec("a", "Kursk: Ukraine zieht Truppen aus Sudscha ab", "Die Armee verlässt die Stadt.")
    assert index.check(first, "a") is None
    assert index.check(_rec("b", "Kursk: Ukraine zieht Truppen aus Sudscha ab", "Die Armee verlässt die Stadt.",
                            lang="en"), "b") is None


def _two_outlets(workdir, feed_server, telegram, watchlist: str, chat: int, names: tuple[str, str]) -> dict[str, str]:
    """Two German feeds (/a.xml, /b.xml) named `names`, `watchlist` sending to `chat`; the CLI's env."""
    wl = workdir / "watchlists" / f"{watchlist}.yaml"
    wl.write_text(wl.read_text(encoding="utf-8") + f"\nchats: [{chat}]\n", encoding="utf-8")
    write_feeds_yaml(workdir / "watchlists", [
        {"id": "outlet-a", "url": feed_server.url("/a.xml"), "name": names[0], "lang": "de"},
        {"id": "outlet-b", "url": feed_server.url("/b.xml"), "name": names[1], "lang": "de"},
    ])
    return {"TELEGRAM_BOT_TOKEN": telegram.TOKEN, "TELEGRAM_API_BASE_URL": telegram.base_url,
            "MEDIABOT_WATCHLISTS_DIR": str(workdir / "watchlists"), "MEDIABOT_STATE_DIR": str(workdir / "state")}


def test_a_copy_that_adds_no_outlet_and_no_headline_sends_no_edit(workdir, feed_server, telegram):
    """An outlet re-publishing its copy under a new link sent every chat an edit with the text unchanged
    (Telegram answers "message is not modified"; API calls for nothing, hunt11b)."""
    env = _two_outlets(workdir, feed_server, telegram, "dprk-troops", -100781, ("Outlet A", "Outlet B"))
    story = {"title": "Nordkoreanische Soldaten kämpfen erstmals im Gebiet Kursk",
             "description": "Kiew meldet erste Gefechte mit Truppen aus Nordkorea an der Seite Russlands nahe Sudscha.",
             "ago": 30}
    feed_server.routes["/a.xml"] = Route(rss([dict(story, link="https://a.example/1", guid="a1")]))
    feed_server.routes["/b.xml"] = Route(rss([]))
    assert run_cli(["poll", "--once"], env).returncode == 0
    copies = []
    for n in (1, 2):  # Outlet B's copy, then the same copy under a new link
        copies.append(dict(story, link=f"https://b.example/{n}", guid=f"b{n}", ago=20 - n))
        feed_server.routes["/b.xml"] = Route(rss(copies))
        assert run_cli(["poll", "--once"], env).returncode == 0
    edits = [m for m in telegram.messages if m.method == "editMessageText"]
    assert len(edits) == 1 and "Outlet B" in edits[0].text
    assert len(telegram.sent_to(-100781)) == 1


def test_same_story_in_two_feeds_alerts_once_across_a_restart(workdir, feed_server, telegram):
    """The second outlet's copy arrives after a process restart: no second alert, the first is edited."""
    env = _two_outlets(workdir, feed_server, telegram, "dprk-troops", -100777, ("Outlet A", "Outlet B"))
    story = {"title": "Nordkoreanische Soldaten kämpfen erstmals im Gebiet Kursk",
             "description": "Kiew meldet erste Gefechte mit Truppen aus Nordkorea an der Seite Russlands nahe Sudscha.",
             "ago": 5}
    feed_server.routes["/a.xml"] = Route(rss([dict(story, link="https://a.example/1", guid="a1")]))
    feed_server.routes["/b.xml"] = Route(rss([]))
    assert run_cli(["poll", "--once"], env).returncode == 0
    assert len(telegram.sent_to(-100777)) == 1
    copy = dict(story, title="Ukraine-Krieg: Nordkoreanische Soldaten kämpfen erstmals im Gebiet Kursk",
                link="https://b.example/99", guid="b99", ago=1)
    feed_server.routes["/b.xml"] = Route(rss([copy]))
    second = run_cli(["poll", "--once"], env)
    assert second.returncode == 0, second.stderr
    assert len(telegram.sent_to(-100777)) == 1  # no new ping
    edits = [m for m in telegram.messages if m.method == "editMessageText"]
    assert len(edits) == 1 and "Outlet B" in edits[0].text
    assert "↳" not in edits[0].text  # a near-identical agency headline is not repeated


def test_an_outlet_that_updates_its_own_article_under_a_new_link_shows_the_new_headline(workdir, feed_server,
                                                                                         telegram):
    """A feed without guids; the outlet's CMS gives the updated article a new slug and a new headline. The
    update folds into the story of its first version, and because its outlet was the alert's own, it was
    shown nowhere: the state of emergency never reached the chat."""
    env = _two_outlets(workdir, feed_server, telegram, "kursk-front", -100781, ("FAZ.NET", "Outlet B"))
    body = ("Ukrainische Truppen sind nach russischen Angaben in das Gebiet Kursk vorgedrungen. Das "
            "Verteidigungsministerium in Moskau sprach von einem Angriff mit bis zu 1000 Soldaten und Panzern. "
            "Kiew äußerte sich zunächst nicht.")
    feed_server.routes["/a.xml"] = Route(rss([{"title": "Ukrainische Einheiten dringen in Gebiet Kursk ein",
                                               "description": body, "link": "https://faz.example/einheiten-1.html",
                                               "ago": 50}]))
    feed_server.routes["/b.xml"] = Route(rss([]))
    assert run_cli(["poll", "--once"], env).returncode == 0
    update = "Kursk: Russland ruft Notstand aus – Ukrainer zehn Kilometer vorgerückt"
    feed_server.routes["/a.xml"] = Route(rss([{"title": update, "link": "https://faz.example/notstand-1.html",
                                               "description": "Russland hat im Gebiet Kursk den Notstand ausgerufen. "
                                               + body, "ago": 5}]))
    assert run_cli(["poll", "--once"], env).returncode == 0
    assert len(telegram.sent_to(-100781)) == 1  # folded: no second ping
    [edit] = [m for m in telegram.messages if m.method == "editMessageText"]
    assert f"↳ FAZ.NET: {update}" in edit.text
    assert "auch: FAZ.NET" not in edit.text  # the alert's own outlet is not "also"


def test_a_copy_with_its_own_headline_edits_the_alert_and_shows_the_headline(workdir, feed_server, telegram):
    """Another outlet runs the agency text under its own headline: no second ping; the first alert is
    edited and names the outlet with its headline, so a fold is never invisible."""
    env = _two_outlets(workdir, feed_server, telegram, "russia-dprk-treaty", -100778, ("Agentur", "Boulevard"))
    first = {"title": "Putin und Kim unterzeichnen Partnerschaftsabkommen",
             "description": "Kremlchef Wladimir Putin und Nordkoreas Machthaber Kim Jong Un haben in Pjöngjang ein "
                            "Abkommen über eine umfassende strategische Partnerschaft unterzeichnet. Es sieht "
                            "gegenseitige Hilfe im Fall einer Aggression vor.",
             "link": "https://agentur.example/putin-kim", "guid": "a1", "ago": 90}
    feed_server.routes["/a.xml"] = Route(rss([first]))
    feed_server.routes["/b.xml"] = Route(rss([]))
    assert run_cli(["poll", "--once"], env).returncode == 0
    assert len(telegram.sent_to(-100778)) == 1
    rewrite = {"title": "Pakt der Diktatoren! Kim und Putin schwören sich Beistand",
               "description": "Kremlchef Wladimir Putin und Nordkoreas Machthaber Kim Jong Un haben in Pjöngjang ein "
                              "Abkommen über eine umfassende strategische Partnerschaft unterzeichnet. Es sieht "
                              "gegenseitige Hilfe bei einer Aggression vor.",
               "link": "https://boulevard.example/pakt", "guid": "b1", "ago": 5}
    feed_server.routes["/b.xml"] = Route(rss([rewrite]))
    assert run_cli(["poll", "--once"], env).returncode == 0
    assert len(telegram.sent_to(-100778)) == 1
    edits = [m for m in telegram.messages if m.method == "editMessageText"]
    assert len(edits) == 1
    assert "Boulevard" in edits[0].text and "Pakt der Diktatoren!" in edits[0].text


def test_copies_in_one_cycle_lead_with_the_one_published_first(workdir, feed_server, telegram):
    """Two outlets carry a story in the same cycle; the one that published first answers last. The
    single alert leads with the first publisher's headline and lists the other under it."""
    env = _two_outlets(workdir, feed_server, telegram, "dprk-troops", -100779, ("Spät-Zeitung", "Früh-Agentur"))
    text = "Kiew meldet erste Gefechte mit Truppen aus Nordkorea an der Seite Russlands nahe Sudscha."
    feed_server.routes["/a.xml"] = Route(rss([{
        "title": "Ukraine-Krieg: Nordkoreanische Soldaten kämpfen erstmals im Gebiet Kursk",
        "description": text, "link": "https://spaet.example/1", "guid": "s1", "ago": 5}]))
    early = rss([{"title": "Nordkoreanische Soldaten kämpfen erstmals im Gebiet Kursk", "description": text,
                  "link": "https://frueh.example/1", "guid": "f1", "ago": 20}])

    def slow(h):  # the earlier publisher's feed answers after the other one was written
        if feed_server.stopping.wait(1.0):
            return
        h.send_response(200)
        h.send_header("Content-Type", "application/rss+xml")
        h.send_header("Content-Length", str(len(early)))
        h.end_headers()
        h.wfile.write(early)

    feed_server.routes["/b.xml"] = Route(handler=slow)
    result = run_cli(["poll", "--once"], env)
    assert result.returncode == 0, result.stderr
    sent = telegram.sent_to(-100779)
    assert len(sent) == 1
    lead = sent[0].text.splitlines()[0]
    assert "Nordkoreanische Soldaten kämpfen erstmals" in lead and "Ukraine-Krieg" not in lead
    assert "Früh-Agentur" in sent[0].text and "Spät-Zeitung" in sent[0].text
    assert "https://frueh.example/1" in sent[0].text  # the lead links to the first publisher


def test_an_alert_already_sent_keeps_its_lead_when_an_earlier_copy_turns_up(workdir, feed_server, telegram):
    env = _two_outlets(workdir, feed_server, telegram, "dprk-troops", -100780, ("Outlet A", "Outlet B"))
    text = "Kiew meldet erste Gefechte mit Truppen aus Nordkorea an der Seite Russlands nahe Sudscha."
    feed_server.routes["/a.xml"] = Route(rss([{"title": "Nordkoreanische Soldaten kämpfen erstmals im Gebiet Kursk",
                                               "description": text, "link": "https://a.example/1", "guid": "a1",
                                               "ago": 5}]))
    feed_server.routes["/b.xml"] = Route(rss([]))
    assert run_cli(["poll", "--once"], env).returncode == 0
    feed_server.routes["/b.xml"] = Route(rss([{"title": "Ukraine-Krieg: Nordkoreanische Soldaten kämpfen im Gebiet "
                                               "Kursk", "description": text, "link": "https://b.example/1",
                                               "guid": "b1", "ago": 30}]))  # published earlier, found later
    assert run_cli(["poll", "--once"], env).returncode == 0
    assert len(telegram.sent_to(-100780)) == 1
    edits = [m for m in telegram.messages if m.method == "editMessageText"]
    assert len(edits) == 1 and "https://a.example/1" in edits[0].text and "Outlet B" in edits[0].text


@pytest.mark.parametrize(("lead", "copy", "shown"), [
    ("Selenskyj: Nordkoreanische Soldaten aus Kursk abgezogen", "Selenskyj: Nordkoreanische Soldaten zurück in Kursk",
     True),
    ("North Korean troops pulled back from Kursk", "North Korean troops back in Kursk", True),
    ("North Korean soldier captured in Kursk dies of wounds",
     "North Korean soldier captured in Kursk asks to stay in Ukraine", True),
    ("Ukraine nimmt zwei nordkoreanische Soldaten gefangen",
     "Ukraine-Krieg: Ukraine nimmt zwei nordkoreanische Soldaten gefangen", False),
    ("Russland meldet Rückeroberung von Sudscha", "Russland meldet Rückeroberung von Sudscha.", False),
    ("Putin und Kim unterzeichnen Partnerschaftsabkommen",  # a long rubric of the copy's own over the same headline
     "Staatsbesuch in Nordkorea: Putin und Kim unterzeichnen Partnerschaftsabkommen", False),
    ("Ukraine-Krieg: Putin und Kim unterzeichnen Partnerschaftsabkommen",
     "Krieg gegen die Ukraine: Putin und Kim unterzeichnen Partnerschaftsabkommen", False),
    ("Putin und Kim unterzeichnen Partnerschaftsabkommen", "Putin und Kim unterzeichnen Beistandspakt", True),
    # the same figure written with and without a thousands separator (hunt11b)
    ("Nordkorea schickt weitere 3.000 Soldaten nach Russland",
     "Geheimdienst: Nordkorea schickt weitere 3000 Soldaten nach Russland", False),
    ("Nordkorea schickt weitere 3.000 Soldaten nach Russland",
     "Nordkorea schickt weitere 2.000 Soldaten nach Russland", True),
])
def test_a_folded_headline_that_swaps_a_word_is_shown_under_the_alert(lead, copy, shown):
    """Nearly the same characters are not enough to hide a copy's headline: one swapped word can turn a
    withdrawal into a return, and such a report, folded in by mistake, must not vanish into "also"."""
    from zoneinfo import ZoneInfo

    from bot.alerts import render_alert

    rendered = render_alert({"title": lead, "source": "Agentur"}, watchlist_name="Truppen",
                            tz=ZoneInfo("Europe/Berlin"), also=[("Outlet Y", copy)])
    assert ("↳ Outlet Y: " + copy in rendered.plain) is shown, rendered.plain


def test_an_alert_deleted_in_the_chat_is_not_edited_again_and_nothing_counts_as_failed(workdir, feed_server,
                                                                                      telegram):
    """A journalist deletes the alert; every later copy of the story used to try an "also" edit, each
    logged as an ERROR "send failed" and counted in alerts_failed."""
    env = _two_outlets(workdir, feed_server, telegram, "dprk-troops", -100780, ("Outlet A", "Outlet B"))
    story = {"title": "Nordkoreanische Soldaten kämpfen erstmals im Gebiet Kursk",
             "description": "Kiew meldet erste Gefechte mit Truppen aus Nordkorea an der Seite Russlands nahe Sudscha.",
             "ago": 30}
    feed_server.routes["/a.xml"] = Route(rss([dict(story, link="https://a.example/1", guid="a1")]))
    feed_server.routes["/b.xml"] = Route(rss([]))
    assert run_cli(["poll", "--once"], env).returncode == 0
    [alert] = telegram.sent_to(-100780)
    telegram.deleted.add(alert.message_id)
    copies = []
    for n in (1, 2):
        copies.append(dict(story, link=f"https://b.example/{n}", guid=f"b{n}", ago=20 - n))
        feed_server.routes["/b.xml"] = Route(rss(copies))
        result = run_cli(["poll", "--once"], env)
        assert result.returncode == 0, result.stderr
        assert "send failed" not in result.stderr and '"level": "error"' not in result.stderr
    assert len(telegram.sent_to(-100780)) == 1  # still no second ping
    assert [m for m, _p, _t in telegram.calls].count("editMessageText") == 1


@pytest.mark.parametrize(("first", "later", "lang"), [
    (("Nordkorea schickt weitere 3000 Soldaten nach Russland",
      "Nordkorea hat nach Angaben des südkoreanischen Geheimdienstes weitere 3000 Soldaten nach Russland geschickt."),
     ("Nordkorea zieht 3000 Soldaten aus Russland ab",
      "Nordkorea hat nach Angaben des südkoreanischen Geheimdienstes 3000 Soldaten aus Russland abgezogen."), "de"),
    (("North Korea sends 3,000 more troops to Russia, Seoul says",
      "North Korea has sent another 3,000 soldiers to Russia, South Korea's spy agency said on Thursday."),
     ("North Korea pulls 3,000 troops out of Russia, Seoul says",
      "North Korea has withdrawn 3,000 soldiers from Russia, South Korea's spy agency said on Thursday."), "en"),
    (("Kursk: Ukraine meldet Angriff auf Sudscha",
      "Die ukrainische Armee hat nach eigenen Angaben einen russischen Angriff auf Sudscha abgewehrt."),
     ("Kursk: Russland meldet Rückeroberung von Sudscha",
      "Die russische Armee hat nach eigenen Angaben die Stadt Sudscha zurückerobert."), "de"),
    (("Zelensky offers to swap North Korean prisoners",
      "Zelensky offered to hand over two captured North Korean soldiers in exchange for Ukrainians held in Russia."),
     ("Kremlin rejects Zelensky's offer to swap North Korean prisoners",
      "The Kremlin rejected Zelensky's offer to hand over two captured North Korean soldiers in exchange for "
      "Ukrainians held in Russia."), "en"),
    (("Два северокорейских солдата взяты в плен в Курской области",
      "ВСУ взяли в плен двух военных КНДР в Курской области, сообщил Зеленский."),
     ("Два северокорейских солдата погибли в Курской области",
      "Два военных КНДР погибли в Курской области, сообщил Зеленский."), "ru"),
    (("Putin signs law ratifying pact with North Korea",
      "Russian President Vladimir Putin signed a law ratifying the mutual defence treaty with North Korea."),
     ("Kim Jong Un signs decree ratifying pact with Russia",
      "North Korean leader Kim Jong Un signed a decree ratifying the mutual defence treaty with Russia."), "en"),
    # the same teaser under both, naming no event or only the background: the headlines decide
    (("Putin signs law ratifying pact with North Korea",
      "The comprehensive strategic partnership treaty obliges both countries to provide immediate military "
      "assistance."),
     ("Kim Jong Un signs decree ratifying pact with Russia",
      "The comprehensive strategic partnership treaty obliges both countries to provide immediate military "
      "assistance."), "en"),
    (("North Korea sends 3,000 troops to Russia, Seoul says",
      "Pyongyang has sent around 11,000 soldiers to help Moscow in the Kursk region, according to Seoul."),
     ("North Korea pulls 3,000 troops out of Russia, Seoul says",
      "Pyongyang has sent around 11,000 soldiers to help Moscow in the Kursk region, according to Seoul."), "en"),
    # feeds in languages beyond the shipped lists' five (a foreign desk's own lists)
    (("Pyongyang envoie 2 000 soldats supplémentaires en Russie, selon Séoul",
      "Les services sud-coréens affirment que Pyongyang a envoyé 2 000 soldats de plus dans la région de Koursk."),
     ("Pyongyang retire 2 000 soldats de Russie, selon Séoul",
      "Les services sud-coréens affirment que Pyongyang a retiré 2 000 soldats de la région de Koursk."), "fr"),
    (("Pyongyang envía 2.000 soldados más a Rusia, según Seúl",
      "La inteligencia surcoreana afirma que Pyongyang envió 2.000 soldados más a la región de Kursk."),
     ("Pyongyang retira 2.000 soldados de Rusia, según Seúl",
      "La inteligencia surcoreana afirma que Pyongyang retiró 2.000 soldados de la región de Kursk."), "es"),
    (("Kursk, l'Ucraina respinge un attacco russo a Sudzha",
      "L'esercito ucraino afferma di aver respinto un attacco russo contro Sudzha."),
     ("Kursk, la Russia riconquista Sudzha",
      "L'esercito russo afferma di aver riconquistato la città di Sudzha."), "it"),
    (("Kuzey Kore Rusya'ya 2 bin asker daha gönderdi",
      "Güney Kore istihbaratına göre Pyongyang, Kursk bölgesine 2 bin asker daha gönderdi."),
     ("Kuzey Kore Rusya'dan 2 bin askerini geri çekti",
      "Güney Kore istihbaratına göre Pyongyang, Kursk bölgesinden 2 bin askerini geri çekti."), "tr"),
    (("كوريا الشمالية ترسل ألفي جندي إضافي إلى روسيا",
      "قالت الاستخبارات الكورية الجنوبية إن بيونغ يانغ أرسلت ألفي جندي إضافي إلى منطقة كورسك."),
     ("كوريا الشمالية تسحب ألفي جندي من روسيا",
      "قالت الاستخبارات الكورية الجنوبية إن بيونغ يانغ سحبت ألفي جندي من منطقة كورسك."), "ar"),
], ids=["de-sent-withdrawn", "en-sent-withdrawn", "de-attack-recapture", "en-offer-rejected", "ru-captured-killed",
        "en-putin-kim", "en-putin-kim-same-teaser", "en-sends-pulls-same-background", "fr-sent-withdrawn",
        "es-sent-withdrawn", "it-attack-recapture", "tr-sent-withdrawn", "ar-sent-withdrawn"])
def test_the_opposite_event_in_the_same_template_is_another_story(first, later, lang):
    """A bug hunt's wrong merges: the later report reverses, answers or mirrors the first in the same
    words. Folded, it only showed as a silent edit of the first alert."""
    index = StoryIndex()
    index.check(_rec("a", *first, lang=lang), "a")
    assert index.check(_rec("b", *later, lang=lang, minutes=40), "b") is None


@pytest.mark.parametrize(("first", "copy", "lang"), [
    (("Pyongyang envoie 2 000 soldats supplémentaires en Russie, selon Séoul",
      "Les services sud-coréens affirment que Pyongyang a envoyé 2 000 soldats de plus dans la région de Koursk."),
     ("Guerre en Ukraine : Pyongyang envoie 2 000 soldats supplémentaires en Russie",
      "Selon les services sud-coréens, Pyongyang a envoyé 2 000 soldats de plus dans la région de Koursk."), "fr"),
    (("كوريا الشمالية ترسل ألفي جندي إضافي إلى روسيا",
      "قالت الاستخبارات الكورية الجنوبية إن بيونغ يانغ أرسلت ألفي جندي إضافي إلى منطقة كورسك."),
     ("عاجل: كوريا الشمالية ترسل ألفي جندي إضافي إلى روسيا",
      "قالت الاستخبارات الكورية الجنوبية إن بيونغ يانغ أرسلت ألفي جندي إضافي إلى منطقة كورسك الروسية."), "ar"),
], ids=["fr", "ar"])
def test_an_agency_copy_in_another_language_still_folds(first, copy, lang):
    """The event words of other languages split reversals, not copies that name the same event."""
    index = StoryIndex()
    index.check(_rec("a", *first, lang=lang), "a")
    assert index.check(_rec("b", *copy, lang=lang, minutes=30), "b") is not None


def test_a_copy_that_mentions_a_withdrawal_in_its_background_still_folds():
    """Only what a headline says counts against the other item: a village retaken, with units "withdrawn
    for recovery" in the teaser, is the same story as the other outlet's report of the village retaken."""
    index = StoryIndex()
    index.check(_rec("a", "ССО звільнили село на Курщині, яке обороняли росіяни й північнокорейці",
                     "Рейнджери 6-го полку Сил спеціальних операцій після артпідготовки зайшли в населений пункт "
                     "у Курській області та зачистили його. Разом з російськими військовими село тримали "
                     "підрозділи з КНДР, повідомили в ССО.", lang="uk"), "a")
    copy = _rec("b", "Рейнджери ССО звільнили на Курщині село, яке утримували росіяни та КНДР",
                "Бійці 6-го полку Сил спеціальних операцій взяли під контроль село в Курській області, де "
                "оборонялися російські військові разом із північнокорейськими. Виснажені бригади РФ "
                "виводяться на відновлення.", lang="uk", minutes=30)
    assert index.check(copy, "b") == "a"


@pytest.mark.parametrize(("first", "later", "lang"), [
    (("Moscow rejects Seoul's claims about North Korean losses as fake news",
      "Kremlin spokesman Dmitry Peskov said reports of heavy North Korean losses in Kursk were invented."),
     ("Kremlin calls Seoul's claims about North Korean losses 'fake news'",
      "Kremlin spokesman Dmitry Peskov said reports of heavy North Korean losses in Kursk were invented."), "en"),
    (("Kreml lehnt Berichte über nordkoreanische Verluste ab",
      "Kremlsprecher Peskow nannte Berichte über hohe Verluste nordkoreanischer Soldaten in Kursk erfunden."),
     ("Kreml weist Berichte über nordkoreanische Verluste zurück",
      "Kremlsprecher Peskow nannte Berichte über hohe Verluste nordkoreanischer Soldaten in Kursk erfunden."), "de"),
    (("Putin signs law ratifying defence treaty with North Korea",
      "The treaty obliges both countries to help each other if attacked, the Kremlin said."),
     ("Kremlin: Russia ratifies defence treaty with North Korea",
      "The treaty obliges both countries to help each other if attacked, the Kremlin said."), "en"),
    (("Разведка Южной Кореи: выводы о потерях КНДР в Курской области",
      "По оценке разведки, северокорейские войска потеряли в Курской области около 300 человек."),
     ("Разведка Южной Кореи оценила потери КНДР в Курской области",
      "По оценке разведки, северокорейские войска потеряли в Курской области около 300 человек."), "ru"),
    (("Северная Корея вывела своих солдат из Курской области",
      "По данным разведки Южной Кореи, около 11 тысяч военных КНДР выведены с передовой в Курской области "
      "после тяжелых потерь."),
     ("Разведка Южной Кореи сообщила о выводе солдат КНДР из Курской области",
      "По данным разведки Южной Кореи, около 11 тысяч военных КНДР сняты с передовой из Курской области "
      "после тяжелых потерь."), "ru"),
    (("North Korean troops withdrawn from Kursk front line after heavy losses, Seoul says",
      "South Korea's spy agency said North Korean soldiers deployed in Russia's Kursk region suffered heavy "
      "losses in January."),
     ("Seoul: North Korean soldiers have left the Kursk front line after heavy losses",
      "South Korea's spy agency said North Korean soldiers deployed in Russia's Kursk region suffered heavy "
      "losses in January."), "en"),
], ids=["en-rejects-calls", "de-lehnt-ab-weist-zurueck", "en-putin-kremlin", "ru-conclusions",
        "ru-withdrew-withdrawal", "en-withdrawn-left"])
def test_a_copy_worded_differently_still_folds(first, later, lang):
    """Bug hunts: the opposite-events rule split copies whose headlines say the same in other words ("calls
    fake" for "rejects", "weist zurück" for "lehnt ab", the Kremlin for Putin, the noun "вывод" for the verb),
    or where a word only looks like an event (выводы are conclusions, not a withdrawal)."""
    index = StoryIndex()
    index.check(_rec("a", *first, lang=lang), "a")
    assert index.check(_rec("b", *later, lang=lang, minutes=90), "b") == "a"


# Nine reports in the order four outlets carried them, over nine polls; 3, 7 and 8 are copies of 1, 5 and 2.
# Report 9 is another dispatch than 2 (another person, figure and place) in the same template.
_STREAM = [
    ("alpha", "Kiew: 117 nordkoreanische Soldaten bei Belweskirka gefangen genommen, sagt Sammar Volmikir",
     "Der ukrainische Geheimdienst präsentierte 117 Gefangene aus Nordkorea. Kawes Holsamdra sprach von einem "
     "Erfolg bei Belweskirka."),
    ("beta", "Nordkorea schickt weitere Truppen nach Russland: Voltu Ulmmarvas nennt Zahl 288 und Ort Dunquivolka",
     "Pjöngjang hat nach Angaben von Voltu Ulmmarvas zusätzliche Soldaten entsandt; sie sollen in Dunquivolka "
     "ausgebildet werden, so Marhol Voldrashi."),
    ("beta", "Kiew: 117 nordkoreanische Soldaten bei Belweskirka gefangen genommen, sagt Sammar Volmikir",
     "Der ukrainische Geheimdienst präsentierte 117 Gefangene aus Nordkorea. Kawes Holsamdra sprach von einem "
     "Erfolg bei Belweskirka."),
    ("gamma", "North Korean troops spotted near Holfeldraovo in Kursk region, commander Samkir Yakwesqui says 186 "
     "wounded", "According to Samkir Yakwesqui, soldiers from North Korea are fighting alongside Russia near "
     "Holfeldraovo. Zorulm Ganwestem confirmed 186 casualties."),
    ("gamma", "Ukraine says it captured 161 North Korean soldiers at Marfellenovo, Polmar Lenfelwes reports",
     "Ukrainian intelligence showed 161 prisoners from North Korea. Perzor Yakkatos called it a success near "
     "Marfellenovo."),
    ("delta", "North Korea sends more troops to Russia: Temvol Polquinov cites 256 soldiers trained at Beldunvolovo",
     "Pyongyang dispatched additional soldiers according to Temvol Polquinov; they train at Beldunvolovo, Toswes "
     "Weskafel said."),
    ("delta", "Ukraine says it captured 161 North Korean soldiers at Marfellenovo, Polmar Lenfelwes reports",
     "Ukrainian intelligence showed 161 prisoners from North Korea. Perzor Yakkatos called it a success near "
     "Marfellenovo."),
    ("alpha", "Nordkorea schickt weitere Truppen nach Russland: Voltu Ulmmarvas nennt Zahl 288 und Ort Dunquivolka",
     "Pjöngjang hat nach Angaben von Voltu Ulmmarvas zusätzliche Soldaten entsandt; sie sollen in Dunquivolka "
     "ausgebildet werden, so Marhol Voldrashi."),
    ("alpha", "Nordkorea schickt weitere Truppen nach Russland: Quilen Kashitem nennt Zahl 341 und Ort Ganmitemka",
     "Pjöngjang hat nach Angaben von Quilen Kashitem zusätzliche Soldaten entsandt; sie sollen in Ganmitemka "
     "ausgebildet werden, so Marhol Voldrashi."),
]


async def test_the_running_bot_folds_as_match_and_a_restarted_bot_do(workdir, feed_server):
    """The running bot's dedup index held only each story's first report, while the index rebuilt at start
    (and `mediabot match`) holds every copy; word rarities differed, so a report a restarted bot keeps
    apart was folded by one that ran on: report 9 never alerted. Every fold must not depend on restarts."""
    from bot.app import build_runtime
    from bot.config import load_config, load_settings
    from bot.pipeline import run_cycle

    lang = {"alpha": "de", "beta": "de", "gamma": "en", "delta": "en"}
    write_feeds_yaml(workdir / "watchlists", [{"id": f, "url": feed_server.url(f"/{f}.xml"), "name": f.title(),
                                               "lang": lang[f]} for f in lang])
    settings = load_settings({"MEDIABOT_WATCHLISTS_DIR": str(workdir / "watchlists"),
                              "MEDIABOT_STATE_DIR": str(workdir / "state")})
    rt = build_runtime(settings, load_config(settings.watchlists_dir), force_console=True)
    carried: dict[str, list[dict[str, object]]] = {f: [] for f in lang}
    try:
        for n, (feed, title, summary) in enumerate(_STREAM, 1):
            carried[feed].insert(0, {"title": title, "description": summary, "link": f"https://{feed}.example/{n}",
                                     "guid": f"{feed}{n}", "ago": 30})
            for f, items in carried.items():
                feed_server.routes[f"/{f}.xml"] = Route(rss(items))
            await run_cycle(rt.ctx, ignore_schedule=True)
        stored = list(rt.store.story_items_since(datetime.now(UTC) - timedelta(days=1)))
    finally:
        await rt.aclose()
    assert len(stored) == 9
    offline, first_of = StoryIndex(), {}
    for n, (item, _sid) in enumerate(stored):
        first_of[n] = offline.check(item, n)
    live = [sid for _item, sid in stored]
    grouping = [live.index(sid) for sid in live]  # each report -> the first report of its story, as stored
    assert grouping == [n if first_of[n] is None else first_of[n] for n in range(9)]
    assert grouping[-1] == 8  # report 9 is its own story


def test_an_agency_story_carried_by_many_outlets_in_a_fresh_index_is_one_story():
    """A fresh install's first poll: one dpa text under a dozen outlets, some with a rubric, each adding a
    sentence of its own. With every copy indexed, the story's own words soon looked common, and the sixth
    and twelfth copies alerted again; only a story's first report is indexed."""
    rubrics = ["", "Krieg gegen die Ukraine: ", "", "Ukraine-Krieg: ", "", "Liveticker: "]
    when = "Unterdessen Gleichzeitig Derweil Außerdem Zudem Ferner Später Zuvor Abends Morgens Nachts Mittags"
    said = ("warnte forderte erklärte betonte kritisierte bestätigte dementierte lobte verurteilte begrüßte "
            "bezweifelte ankündigte")
    who = "Scholz Macron Stoltenberg Baerbock Pistorius Biden Duda Orban Meloni Tusk Rutte Sunak"
    own = [f" {a} {b} {c}." for a, b, c in zip(when.split(" "), said.split(" "), who.split(" "), strict=True)]
    text = ("Kiew (dpa) - Die ukrainischen Truppen sind nach Angaben von Präsident Wolodymyr Selenskyj im russischen "
            "Gebiet Kursk weiter vorgerückt. Es seien zwei weitere Ortschaften eingenommen worden, sagte er in seiner "
            "abendlichen Videobotschaft.")
    index = StoryIndex()
    folds = [index.check(item_from_record({"id": n, "title": rubrics[n % 6] + "Selenskyj: Ukrainische Truppen rücken "
                                           "im Gebiet Kursk weiter vor", "summary": text + sentence, "lang": "de",
                                           "published": "2024-08-12T20:00:00Z"}), n)
             for n, sentence in enumerate(own)]
    assert folds == [None] + [0] * 11


@pytest.mark.parametrize(("first", "second", "teaser", "lang"), [
    ("Минобороны: ВСУ потеряли в Курской области более 12 тысяч военных",
     "Потери ВСУ в Курской области превысили 12 000 человек",
     "Потери ВСУ на курском направлении превысили 12 тысяч военнослужащих, сообщило Минобороны России.", "ru"),
    ("Ukraine schießt Su-34 über Kursk ab", "Dritter Kampfbomber in einem Monat: Ukraine meldet Abschuss über Kursk",
     "Die ukrainische Luftwaffe hat über dem Gebiet Kursk einen Kampfbomber vom Typ Su-34 abgeschossen. Es wäre "
     "der dritte in diesem Monat.", "de"),
])
def test_one_agency_teaser_under_headlines_that_write_a_figure_differently_is_one_story(first, second, teaser, lang):
    """The template rule (other figures, and names the other item lacks) split re-headlined copies whose teaser
    is the same text: '12 тысяч' / '12 000', a model number / an ordinal."""
    index = StoryIndex()
    assert index.check(item_from_record({"id": "a", "title": first, "summary": teaser, "lang": lang,
                                         "published": "2024-11-20T08:00:00Z"}), "a") is None
    assert index.check(item_from_record({"id": "b", "title": second, "summary": teaser, "lang": lang,
                                         "published": "2024-11-20T08:20:00Z"}), "b") == "a"


def test_a_word_common_in_a_past_surge_finds_copies_again_once_the_surge_expired():
    """A word once in 150 recent items lost its posting for good: after a surge of Sudzha reports had
    expired, a copy of the next Sudzha story alerted a second time in a process that had lived through the
    surge, while a restarted one folded it (dedup depended on uptime)."""
    lead = ("Die ukrainischen Truppen haben sich nach Angaben des Generalstabs aus der Kleinstadt Sudscha im "
            "Gebiet Kursk zurückgezogen.")
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    index = StoryIndex(window=48 * 3600)
    for i in range(160):  # a hot week: the same words in 160 matched reports, each with its own names
        index.add(f"s{i}", f"Lage {i} am Morgen: Ukrainische Truppen ziehen sich aus Sudscha zurück? Ort{i}",
                  f"{lead} Die Lage bleibe angespannt, sagt Sprecher{i}.", "de", t0 + timedelta(minutes=i))
    now = t0 + timedelta(days=5)  # long over
    index.expire(now)
    index.add("story-A", "Ukrainische Truppen ziehen sich aus Sudscha zurück", f"{lead} Die Lage bleibe angespannt.",
              "de", now)
    copy = index.nearest("Ukrainische Truppen ziehen sich aus Sudscha zurück", lead, "de", now + timedelta(minutes=5))
    assert copy == "story-A"


@pytest.mark.parametrize(("title", "lang", "events"), [
    ("Pyongyang retire 2 000 soldats de Russie", "fr", {"withdraw"}),
    ("Kim's top general to retire after Kursk losses", "en", set()),  # French "retire" is English too
    ("Putin's envoy arrives in Pyongyang", "en", set()),
    ("Fears of reprisals grow in Kursk", "en", set()),
    ("Schier endlose Kolonnen an der Grenze", "de", set()),
    ("La Russia riconquista Sudzha", "it", {"recapture"}),
    ("Corea del Norte retira 2.000 soldados de Rusia", "spa", {"withdraw"}),  # ISO 639-2, as some feeds write it
    ("Corea del Norte retira 2.000 soldados de Rusia", "", {"withdraw"}),  # no language: every language's words
])
def test_event_words_of_other_languages_count_only_in_their_language(title, lang, events):
    """The French, Spanish, Italian, Turkish and Arabic event words apply to items of that language: in
    English "retire" made two copies of one story two alerts (a one-sided withdrawal)."""
    from bot.dedup import headline_classes

    assert set(headline_classes(title, lang)[0]) == events
