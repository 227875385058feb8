"""What an admin's hand-written YAML does: clumsy and hostile files get `file:line` errors, never a crash
or a hang, and what they meant (YAML 1.1's `NO`, `on`, `007`) is kept as written."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import load_config, load_settings
from bot.errors import ConfigError
from tests.conftest import run_cli

FEEDS = "feeds:\n  - {id: a, url: 'https://example.org/feed', name: A, lang: de}\n"


def _dir(tmp_path: Path, files: dict[str, str], feeds: str = FEEDS) -> Path:
    d = tmp_path / "wl"
    d.mkdir()
    (d / "feeds.yaml").write_text(feeds, encoding="utf-8")
    for name, text in files.items():
        (d / name).write_text(text, encoding="utf-8")
    return d


def _problems(d: Path) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_config(d)
    return exc.value.problems


@pytest.mark.parametrize("name, text", [
    # an anchor used inside itself: was a RecursionError
    ("loop.yaml", "description: x\ngroups:\n  a: &x [Kursk, *x]\n"),
    # nested aliases ("billion laughs"): was minutes and gigabytes of expansion, on the daemon's event loop
    ("laughs.yaml", "description: x\nl0: &l0 [Kursk, Kursk, Kursk, Kursk, Kursk, Kursk, Kursk, Kursk, Kursk]\n"
     + "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 9)) + "groups:\n  a: *l8\n"),
])
def test_check_reports_hostile_yaml_without_a_traceback(tmp_path: Path, name: str, text: str):
    d = _dir(tmp_path, {name: text})
    result = run_cli(["check"], {"MEDIABOT_WATCHLISTS_DIR": str(d)}, timeout=30)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{d / name}:" in result.stdout
    assert "Traceback" not in result.stderr and "uncaught" not in result.stderr


@pytest.mark.parametrize("url", ["https://[::1/x", "https://example.org:8o80/feed", "https://example.org:99999/feed",
                                 "https://exa mple.org/feed", " https://example.org/feed"])
def test_feed_urls_that_cannot_be_fetched_are_errors_with_their_line(tmp_path: Path, url: str):
    d = _dir(tmp_path, {}, feeds=f"feeds:\n  - id: a\n    url: '{url}'\n")
    result = run_cli(["check"], {"MEDIABOT_WATCHLISTS_DIR": str(d)}, timeout=30)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{d / 'feeds.yaml'}:3: feeds#1 (a):" in result.stdout
    assert "Traceback" not in result.stderr and "uncaught" not in result.stderr


def test_chat_ids_telegram_cannot_have_are_rejected(tmp_path: Path):
    # A 30-digit id passed `check` and then failed every poll (SQLite cannot store it).
    d = _dir(tmp_path, {"k.yaml": "description: x\ngroups:\n  a: [Kursk]\nchats:\n  - -1001234567890\n"
                                  "  - 123456789012345678901234567890\n  - 0\n"})
    problems = _problems(d)
    assert any(p.startswith(f"{d / 'k.yaml'}:6:") and "not a Telegram chat id" in p for p in problems)
    assert any(p.startswith(f"{d / 'k.yaml'}:7:") for p in problems)
    with pytest.raises(ConfigError, match="MEDIABOT_ADMINS"):
        load_settings({"MEDIABOT_ADMINS": "123456789012345678901234567890"})


def test_counts_are_whole_numbers_and_only_intervals_take_durations(tmp_path: Path):
    d = _dir(tmp_path, {"k.yaml": "description: x\nthreshold: 1m\ngroups:\n  a: [Kursk]\n  b: [Krieg]\n"
                                  "rules:\n  - all: [a, b]\n    near: 12.9\n"},
             feeds="feeds:\n  - {id: a, url: 'https://example.org/f', interval: 15m, max_new_alerts: 1h}\n")
    problems = _problems(d)
    k, f = d / "k.yaml", d / "feeds.yaml"
    assert any(p.startswith(f"{k}:2:") and "threshold must be a number" in p for p in problems)
    assert any(p.startswith(f"{k}:8:") and "near must be a whole number" in p for p in problems)
    assert any(p.startswith(f"{f}:2:") and "max_new_alerts" in p for p in problems)
    assert not any("interval" in p for p in problems)  # 15m is a fine interval


def test_a_regex_that_matches_empty_text_would_alert_on_everything(tmp_path: Path):
    d = _dir(tmp_path, {"k.yaml": "description: x\ngroups:\n  a:\n"
                                  "    - {term: 'KN-?23', mode: regex, aliases: ['x*']}\n"})
    problems = _problems(d)
    assert any(p.startswith(f"{d / 'k.yaml'}:4:") and "matches empty text" in p for p in problems)


def test_a_regex_in_double_quotes_that_yaml_turned_into_a_backspace_is_an_error(tmp_path: Path):
    """"\bFAA\b" in double quotes is a backspace to YAML: check said OK and the term never matched."""
    d = _dir(tmp_path, {"k.yaml": 'description: x\ngroups:\n  a:\n    - {term: "\\bFAA\\b", mode: regex}\n'})
    [problem] = _problems(d)
    assert problem.startswith(f"{d / 'k.yaml'}:4:") and "single quotes" in problem


def test_a_feed_capped_at_zero_new_alerts_is_an_error(tmp_path: Path):
    """`max_new_alerts: 0` passed check and silenced the feed, with an admin notice on every poll."""
    d = _dir(tmp_path, {"k.yaml": "description: x\ngroups:\n  a: [Kursk]\n"})
    (d / "feeds.yaml").write_text("feeds:\n  - id: f\n    url: https://f.example/rss\n    max_new_alerts: 0\n")
    assert any(":4:" in p and "max_new_alerts" in p for p in _problems(d))


def test_a_bad_regex_alias_is_reported_at_its_own_line_once_and_quietly(tmp_path: Path,
                                                                       capfd: pytest.CaptureFixture[str]):
    d = _dir(tmp_path, {"k.yaml": "description: x\ngroups:\n  a:\n    - term: 'KN-?23'\n      mode: regex\n"
                                  "      aliases:\n        - 'Hwasong'\n        - 'KN-('\n"})
    problems = _problems(d)
    assert problems == [f"{d / 'k.yaml'}:8: k.groups.a#1: invalid regular expression 'KN-(': missing ): KN-("]
    assert "re2" not in capfd.readouterr().err  # RE2's own copy of the error stays out of the terminal


def test_terms_without_a_letter_or_digit_and_empty_groups_are_errors(tmp_path: Path):
    d = _dir(tmp_path, {"k.yaml": "description: x\ngroups:\n  a: [Kursk, '!!!', '🇰🇵']\n",
                        "e.yaml": "description: x\ngroups: {}\n"})
    problems = _problems(d)
    assert sum("has no letter or digit" in p for p in problems) == 2
    assert any(p.startswith(f"{d / 'e.yaml'}:2:") and "groups is empty" in p for p in problems)


def test_yaml_1_1_numbers_dates_and_booleans_stay_as_written(tmp_path: Path):
    # Unquoted, YAML 1.1 reads 007 as 7, 3.10 as 3.1, `NO` as false and a group named `on` as true.
    d = _dir(tmp_path, {"k.yaml": "description: x\ngroups:\n  on:\n    - 007\n    - 3.10\n    - 2024-02-24\n"
                                  "    - {term: DPRK, mode: acronym, aliases: [NO]}\n  b: [Kursk]\n"
                                  "rules:\n  - all: [on, b]\n"})
    wl = load_config(d).watchlists[0]
    assert [t.term for t in wl.groups["on"]] == ["007", "3.10", "2024-02-24", "DPRK"]
    assert wl.groups["on"][3].aliases == ("NO",)
    assert wl.rules[0].groups == ("on", "b")


def test_merge_keys_work_and_an_unknown_key_is_reported_at_the_key(tmp_path: Path):
    d = _dir(tmp_path, {"k.yaml": "description: x\ngroups:\n  a:\n    - &acr {term: DPRK, mode: acronym}\n"
                                  "    - {<<: *acr, term: KPA}\n"})
    wl = load_config(d).watchlists[0]
    assert [(t.term, t.mode) for t in wl.groups["a"]] == [("DPRK", "acronym"), ("KPA", "acronym")]
    (d / "k.yaml").write_text("description: x\ntreshold:\n  80\ngroups:\n  a: [Kursk]\n", encoding="utf-8")
    assert any(p.startswith(f"{d / 'k.yaml'}:2:") and "treshold" in p for p in _problems(d))


def test_a_control_character_is_reported_at_its_line(tmp_path: Path):
    d = _dir(tmp_path, {"k.yaml": "description: x\ngroups:\n  a: [Kursk\x07]\n"})
    problems = _problems(d)
    assert len(problems) == 1 and problems[0].startswith(f"{d / 'k.yaml'}:3: invalid YAML")
    assert "\n" not in problems[0]


def test_editor_and_file_manager_files_are_not_watchlists(tmp_path: Path):
    # Emacs locks a file being edited with a `.#name` symlink; macOS leaves `._name`; neither may reject the config.
    d = _dir(tmp_path, {"k.yaml": "description: x\ngroups:\n  a: [Kursk]\n", "._k.yaml": "\x00\x01binary",
                        ".draft.yaml": "groups: ["})
    (d / ".#k.yaml").symlink_to("user@host.1234:1700000000")
    assert [w.id for w in load_config(d).watchlists] == ["k"]


def test_feeds_yml_is_read_when_there_is_no_feeds_yaml(tmp_path: Path):
    d = _dir(tmp_path, {"k.yaml": "description: x\ngroups:\n  a: [Kursk]\n"})
    (d / "feeds.yaml").rename(d / "feeds.yml")
    assert [f.id for f in load_config(d).feeds] == ["a"]


def test_a_watchlist_id_too_long_for_telegrams_buttons_is_an_error(tmp_path):
    """Buttons carry "unsub:<id>" and "mute:<id>", and Telegram rejects callback data over 64 bytes: every
    alert of that list failed, and /start went silent."""
    wid = "russia-dprk-treaty-and-the-military-cooperation-around-it-x"  # 59 characters
    (tmp_path / "long").mkdir()
    (tmp_path / "ok").mkdir()
    problems = _problems(_dir(tmp_path / "long", {f"{wid}.yaml": "description: d\ngroups:\n  a: [Kursk]\n"}))
    assert any(f"{wid}.yaml:1:" in p and "at most 58" in p for p in problems), problems
    ok = load_config(_dir(tmp_path / "ok", {f"{wid[:58]}.yaml": "description: d\ngroups:\n  a: [Kursk]\n"}))
    assert [w.id for w in ok.watchlists] == [wid[:58]]


@pytest.mark.parametrize(("name", "value", "says"), [
    ("MEDIABOT_RETENTION_DAYS", "0", "must be from 1"),  # every prune deleted the seen keys: re-alerts
    ("MEDIABOT_FETCH_CONCURRENCY", "0", "must be from 1"),  # poll --once hung for ever
    ("MEDIABOT_PER_HOST_CONCURRENCY", "-1", "must be from 1"),
    ("MEDIABOT_BURST_CAP", "0", "must be from 1"),  # no alert ever again
    ("MEDIABOT_MAX_BODY_BYTES", "0", "must be from 65536"),  # every feed failed
    ("MEDIABOT_USER_AGENT", "bad\nheader", "printable ASCII"),
    ("TELEGRAM_API_BASE_URL", "not a url", "not an http(s) URL"),
    # a local Bot API server given without /bot: the token was glued onto the port and retried for ever as
    # an outage, with /healthz green; with a trailing slash the 404 was blamed on the token
    ("TELEGRAM_API_BASE_URL", "http://127.0.0.1:8081", "must end in /bot"),
    ("TELEGRAM_API_BASE_URL", "http://127.0.0.1:8081/", "must end in /bot"),
    ("MEDIABOT_HTTP_ADDR", "127.0.0.1:99999", "is not 1 to 65535"),
    ("MEDIABOT_POLL_MIN_INTERVAL", "10m", "must lie between"),  # with the 5 min default interval
])
def test_environment_values_that_would_break_the_bot_are_rejected_by_check(workdir, name, value, says):
    from tests.conftest import run_cli

    result = run_cli(["check"], {"MEDIABOT_WATCHLISTS_DIR": str(workdir / "watchlists"), name: value})
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"environment: {name}: " in result.stdout + result.stderr or (
        name == "MEDIABOT_POLL_MIN_INTERVAL" and "MEDIABOT_POLL_INTERVAL (300s) must lie between" in result.stdout)
    assert says in result.stdout + result.stderr


def test_check_looks_at_the_state_directory_without_creating_it(workdir, tmp_path):
    from tests.conftest import run_cli, write_feeds_yaml

    write_feeds_yaml(workdir / "watchlists", [{"id": "news", "url": "https://news.example/feed.xml"}])
    env = {"MEDIABOT_WATCHLISTS_DIR": str(workdir / "watchlists")}
    a_file = tmp_path / "a-file"
    a_file.write_text("x", encoding="utf-8")
    for where, says in ((a_file, "is not a directory"), (a_file / "state", "cannot be created")):
        result = run_cli(["check"], {**env, "MEDIABOT_STATE_DIR": str(where)})
        assert result.returncode == 2, result.stdout + result.stderr
        assert f"environment: MEDIABOT_STATE_DIR: {where}" in result.stdout and says in result.stdout
    fresh = tmp_path / "new" / "state"
    result = run_cli(["check"], {**env, "MEDIABOT_STATE_DIR": str(fresh)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert not fresh.exists()  # the bot makes it at its first start; a check changes nothing


def test_the_readme_watchlist_example_passes_check_without_a_warning(tmp_path: Path):
    """An admin copies the README's example to start a list: it must load as documented, every key of it."""
    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("```yaml\nname: Kursk-Front")
    example = readme[start + len("```yaml\n"): readme.index("```", start + 7)]
    (tmp_path / "feeds.yaml").write_text("feeds:\n  - id: a\n    url: https://example.org/a.xml\n")
    (tmp_path / "kursk.yaml").write_text(example, encoding="utf-8")
    result = run_cli(["check"], {"MEDIABOT_WATCHLISTS_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning" not in result.stdout + result.stderr
    watchlist = load_config(tmp_path).watchlists[0]
    assert watchlist.enabled and watchlist.chats == (-1001234567890,)
    assert [t.threshold for t in watchlist.groups["war"] if t.term == "Offensive"] == [95]


def test_a_base_url_that_says_where_the_token_goes_is_accepted():
    """python-telegram-bot's {token} form is the way to Telegram's test environment."""
    assert load_settings({"TELEGRAM_API_BASE_URL": "https://api.telegram.org/bot{token}/test"}).api_base_url.endswith(
        "{token}/test")


def test_check_shows_the_settings_without_credentials_in_the_telegram_url(workdir):
    """The log redacts user:pass@ in URLs; `check` printed TELEGRAM_API_BASE_URL as it was."""
    (workdir / "watchlists" / "feeds.yaml").write_text("feeds:\n  - id: a\n    url: https://example.org/a.xml\n")
    result = run_cli(["check"], {"MEDIABOT_WATCHLISTS_DIR": str(workdir / "watchlists"),
                                 "TELEGRAM_API_BASE_URL": "https://proxyuser:s3cretpass@tg.example/bot"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "s3cretpass" not in result.stdout
    assert "TELEGRAM_API_BASE_URL=https://[REDACTED]@tg.example/bot" in result.stdout


# -- slips an admin makes that YAML would take without a word (hunt11a) --------------------------------------

_LIST = "description: x\ngroups:\n  place: [Kursk]\n  actor: [Nordkorea]\n"


def _warnings(d: Path) -> list[str]:
    from bot.match import lint_watchlists

    return lint_watchlists(load_config(d).watchlists)


def test_an_empty_rules_key_and_no_rules_with_a_veto_group_are_warnings(tmp_path: Path):
    """`rules:` left empty (or commented out) made every group required, the one meant for a veto too: the
    list alerted on the stories it was written to keep out, and check said OK. A warning, not an error: such
    a file loaded until now, and an upgrade must not stop a deployment (hunt12a)."""
    d = _dir(tmp_path, {"t.yaml": _LIST + "  veto: [Israel]\nrules:\n#  - all: [place, actor]\n"})
    assert [w for w in _warnings(d) if w.startswith(f"{d / 't.yaml'}:6: warning: `rules:` is empty")], _warnings(d)
    (d / "t.yaml").write_text(_LIST + "  veto: [Israel]\n", encoding="utf-8")
    assert any(w.startswith(f"{d / 't.yaml'}:1: warning: no `rules:`") and "place, actor, veto" in w
               for w in _warnings(d))
    (d / "t.yaml").write_text(_LIST, encoding="utf-8")  # two groups and no rules: both required, as documented
    assert _warnings(d) == []


@pytest.mark.parametrize("terms, says", [
    ("  veto: [Israel Израиль Tel Aviv]\n", "is one term whose words must all follow each other"),
    ("  veto: [Israel Израиль]\n", "is one term whose words must all follow each other"),
    ("  veto: [israel израиль]\n", "is one term whose words must all follow each other"),
    ("  veto: [NATO НАТО]\n", "is one term whose words must all follow each other"),
    ("  veto: [Kursk NEAR/5 Front]\n", "NEAR/n inside a term is read as words"),
    # a list item indented one level too deep: YAML joined it to the item above ("Niger - Niamey")
    ("  veto:\n    - Israel\n      - Gaza\n", "'Israel - Gaza' runs over 2 lines"),
    ("  veto: [Israel; Israeli]\n", "is one term whose words must all follow each other"),
    ("  veto:\n    - {term: car, mode: acronym}\n", "'car' is an acronym in lower case"),
    ("  veto: [Iran AND Israel]\n", "AND, OR and NOT inside a term are read as words"),
    ("  veto: [غزة]\n", "does not match under the one-letter prefixes Arabic and Hebrew glue on"),
    ("  veto: [עזה]\n", "does not match under the one-letter prefixes Arabic and Hebrew glue on"),
])
def test_slips_that_load_are_warned_about(tmp_path: Path, terms: str, says: str):
    d = _dir(tmp_path, {"t.yaml": _LIST + terms + "rules:\n  - all: [place, actor]\n    unless_any: [veto]\n"})
    line = 5 if "[" in terms else 6  # the term's line
    assert [w for w in _warnings(d) if says in w and f":{line}: warning:" in w], _warnings(d)


@pytest.mark.parametrize("term", ["ЗРК Patriot", "истребители F-16", "ракеты ATACMS", "Ким Чен Ын",
                                  "{term: NEAR, mode: acronym}", "fighting near Kursk", "إيران",
                                  "{term: غزة, aliases: [بغزة, لغزة, وغزة]}"])
def test_real_phrases_bring_no_warning(tmp_path: Path, term: str):
    d = _dir(tmp_path, {"t.yaml": _LIST.replace("[Kursk]", f"[Kursk, {term}]")})
    assert _warnings(d) == []


def test_the_shipped_lists_bring_none_of_the_new_warnings():
    from bot.match import lint_watchlists
    from tests.conftest import ROOT

    assert lint_watchlists(load_config(ROOT / "watchlists").watchlists) == []


@pytest.mark.parametrize("text, line, says", [
    (_LIST + "  veto:\n    - {term: Iran, aliases: [{term: Иран, mode: exact}]}\n", 6,
     "{term: 'Иран', mode: 'exact'}: an alias is plain text"),
    (_LIST.replace("[Kursk]", "[Kursk, Shahed: 136]"), 3, "'Shahed: 136' reads as a key and a value"),
    (_LIST.replace("[Kursk]", "[Kursk, {trem: Kurtschatow}]"), 3, "unknown key 'trem' (did you mean 'term'?)"),
    (_LIST.replace("[Kursk]", "['Kursk, Front]"), 3, "a quote opened on this line is never closed"),
    (_LIST.replace("[Kursk]", "[Kursk, Front"), 3, "a [ opened on this line is not closed"),
    (_LIST.replace("description: x", "description: Kursk: die Front"), 1, "put the whole text in quotes"),
    (_LIST.replace("  place:", "\tplace:"), 3, "a tab character: indent with spaces"),
    (_LIST + "threshold: '90'\n", 5, "got '90' (write it as a plain number: no quotes, no leading 0)"),
    (_LIST + "rules:\n  - all: place, actor\n", 6, "group names in brackets (all: [place, actor])"),
    (_LIST + "  veto:\n    - {term: 'Iran(?!ian)', mode: regex}\n", 6, "RE2 has no lookaround"),
])
def test_yaml_slips_are_errors_at_the_line_that_needs_the_fix(tmp_path: Path, text: str, line: int, says: str):
    d = _dir(tmp_path, {"t.yaml": text})
    problems = _problems(d)
    assert [p for p in problems if p.startswith(f"{d / 't.yaml'}:{line}:") and says in p], problems
    assert "_Located" not in " ".join(problems)


def test_a_misspelt_groups_key_is_one_problem_not_one_per_rule_and_problems_come_in_line_order(tmp_path: Path):
    text = _LIST.replace("groups:", "gropus:") + "rules:\n  - all: [place, actor]\n    near: 5\n" \
        + "  - all: [place]\n"
    problems = _problems(_dir(tmp_path, {"t.yaml": text}))
    assert len(problems) == 2 and "did you mean 'groups'" in " ".join(problems), problems
    text = _LIST + "threshold: 200\nrules:\n  - all: [place, nobody]\n    near: x\n" + "fields: nope\n"
    (tmp_path / "b").mkdir()
    lines = [int(p.split(":")[1]) for p in _problems(_dir(tmp_path / "b", {"t.yaml": text}))]
    assert lines == sorted(lines) and len(lines) == 4


def test_one_group_name_without_brackets_is_a_list_of_one(tmp_path: Path):
    d = _dir(tmp_path, {"t.yaml": _LIST + "  veto: [Israel]\nrules:\n  - all: [place, actor]\n"
                                          "    unless_title: veto\n"})
    assert load_config(d).watchlists[0].rules[0].unless_title == ("veto",)


def test_an_empty_rules_list_loads_and_is_warned_about(tmp_path: Path):
    """`rules: []` loaded before as a list that never matches; it still loads (an upgrade must not stop a
    deployment), and check says why the list will stay silent."""
    d = _dir(tmp_path, {"t.yaml": _LIST + "rules: []\n"})
    assert load_config(d).watchlists[0].rules == ()
    assert [w for w in _warnings(d) if ":5: warning: `rules: []` lists no rule, so this list never matches" in w]
