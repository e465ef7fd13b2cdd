"""Who may approve without review or silence a finding: break glass is the whole first line of a
comment from an authorised human, and so are dismissals (won't fix, acknowledged, resolving our
thread). `aiplane review --vcs github|gitlab` against the wire-format doubles."""

from __future__ import annotations

import json
import logging
import os
import sqlite3

import pytest

from aiplane.review import memory
from aiplane.vcs.local import LocalHost
from aiplane.vcs.model import Comment, Thread
from tests.doubles import github as gh
from tests.doubles import gitlab as gl
from tests.test_review_ci import FLAGGED, _github_run, _gitlab_run, _push, github, gitlab, repo  # noqa: F401 - fixtures

CRITICAL = FLAGGED.replace("MODEL:FLAG", "MODEL:FLAG MODEL:CRITICAL")
PERMISSION = "/repos/acme/widgets/collaborators/{}/permission"

ACCEPTED = [
    "break glass",
    "Break Glass",
    "BREAK-GLASS",
    "break-glass",
    "/break glass",
    "/break-glass!",
    "break glass.",
    "   break glass",  # three spaces are still a paragraph
    "break glass  ",
    "break glass\nProduction is down, INC-4411.",
    "break glass\r\nProduction is down.",
]

REFUSED = [
    "```\nbreak glass\n```",  # a code fence
    "~~~\nbreak glass\n~~~",
    "`break glass`",  # inline code
    "<!-- break glass -->",  # an HTML comment
    "<!--\nbreak glass\n-->",
    "> break glass",  # a quote
    ">break glass",
    "LGTM\nbreak glass",  # a later line
    "\nbreak glass",  # not the first line either
    "please do not break glass",  # negated
    "do not break glass",
    "don't break glass",
    "break glass?",
    "break glass please",  # trailing text
    "break glass!!",
    "bre\u0430k glass",  # Cyrillic а
    "br\u0435ak glass",  # Cyrillic е
    "\uff42\uff52\uff45\uff41\uff4b \uff47\uff4c\uff41\uff53\uff53",  # fullwidth
    "bre\u200dak glass",  # zero-width joiner inside
    "break\u200b glass",  # zero-width space
    "break glass\u200b",
    "bre\u00adak glass",  # soft hyphen
    "\ufeffbreak glass",  # byte-order mark
    "break\u00a0glass",  # no-break space
    "brea\u212a glass",  # Kelvin sign, which IGNORECASE alone would take for k
    "break gla\u017fs",  # long s, likewise
    "&#98;reak glass",  # an HTML entity
    "break&#32;glass",
    "&nbsp;break glass",
    "    break glass",  # four spaces: a code block
    "\tbreak glass",  # a tab: a code block too
    "breakglass",
    "break  glass",
    "break_glass",
    "/ break glass",
    "*break glass*",
    "**break glass**",
    "# break glass",
    "- break glass",
    "<b>break glass</b>",
]


# -- the command form ------------------------------------------------------------------------------


@pytest.mark.parametrize("body", ACCEPTED)
def test_break_glass_command_forms(body):
    assert memory.is_break_glass(body)


@pytest.mark.parametrize("body", REFUSED)
def test_look_alike_or_misplaced_break_glass_is_not_the_command(body):
    assert not memory.is_break_glass(body)


def test_break_glass_is_judged_in_order_and_needs_authority():
    comments = [Comment("1", "break glass", "drive-by"), Comment("2", "break glass", "renovate", is_bot=True),
                Comment("3", "please break glass", "owner"), Comment("4", "/break-glass", "owner"),
                Comment("5", "break glass", "later")]
    asked = memory.break_glass(comments, lambda c: c.author == "owner")
    assert asked.by is not None and asked.by.id == "4"
    assert [c.author for c in asked.ignored] == ["drive-by"]  # the bot is not even a request
    assert memory.break_glass(comments, memory.nobody).by is None


def test_dismissals_count_only_from_authorised_humans():
    thread = Thread("t", "c", "finding", "aiplane", resolved=True, resolved_by="author", resolved_by_id="9",
                    replies=[Comment("r1", "Won't fix.", "author"), Comment("r2", "acknowledged", "aiplane", is_bot=True)])
    prior = memory.Prior("0" * 16, "critical", thread=thread)
    assert not prior.dismissed and prior.unheeded() == ["author"]  # nobody's word counts by default
    prior.authorized = lambda c: c.author == "lead"
    assert not prior.dismissed
    thread.replies.append(Comment("r3", "Wontfix, tracked in INFRA-9", "lead"))
    assert prior.dismissal().author == "lead" and prior.unheeded() == []
    # The reviewers are told whose answers count.
    described = memory.Memory(priors={prior.fingerprint: prior}).describe()
    assert "dismissed by an authorised reviewer" in described
    assert "reply from someone without authority to dismiss: Won't fix." in described
    assert "reply from an authorised reviewer: Wontfix, tracked in INFRA-9" in described
    prior.authorized = memory.nobody
    assert "a dismissal by someone without the authority to dismiss findings does not count" in memory.Memory(
        priors={prior.fingerprint: prior}).describe()
    # Resolved by an authorised human counts too; resolved by ourselves never does.
    resolved = memory.Prior("1" * 16, "warning", thread=Thread("t2", "c2", "f", "aiplane", resolved=True, resolved_by="lead"),
                            authorized=lambda c: c.author == "lead")
    assert resolved.dismissed
    ours = memory.Prior("2" * 16, "warning", thread=Thread("t3", "c3", "f", "aiplane", resolved=True, resolved_by="aiplane",
                                                           resolved_by_bot=True), authorized=lambda c: True)
    assert not ours.dismissed


def test_local_host_trusts_the_local_user_and_never_itself(tmp_path):
    host = LocalHost(tmp_path)
    assert host.authorized(Comment("1", "break glass", "me"))
    assert not host.authorized(Comment("2", "break glass", "aiplane", is_bot=True))


# -- GitHub: break glass ---------------------------------------------------------------------------


def _rows(repo) -> list[tuple]:  # noqa: F811 - the fixture's name
    db = sqlite3.connect(repo.path.parent / "data" / "aiplane.db")
    return db.execute("SELECT break_glass, break_glass_by, verdict FROM review_runs").fetchall()


@pytest.mark.parametrize(("login", "association", "role", "looked_up"), [
    ("founder", "OWNER", None, False),
    ("contractor", "COLLABORATOR", None, False),
    ("lead", "CONTRIBUTOR", "maintain", True),  # GitHub's legacy `permission` says write; role_name says maintain
    ("root", "NONE", "admin", True),
])
def test_github_break_glass_from_an_authorised_human(repo, github, model, login, association, role, looked_up):  # noqa: F811
    _server, state = github
    _push(repo, CRITICAL, "use eval")
    state.associations[login] = association
    if role:
        state.roles[login] = role
    state.add_issue_comment(login, "/break-glass\nProduction is down.")
    before = len(model[1].calls)
    result = _github_run(repo, github, model[0])
    review = json.loads(result.stdout)
    assert result.returncode == 0, result.stderr
    assert review["break_glass"] is True and review["verdict"] == "approve" and len(model[1].calls) == before
    assert state.reviews[-1]["state"] == "APPROVED" and state.statuses[-1]["state"] == "success"
    assert f"Break glass by {login}" in state.statuses[-1]["description"]
    (summary,) = state.bot_summaries()
    # Rendered as code: the summary names them without sending a notification.
    assert f"at the request of `@{login}`" in summary["body"] and "was ignored" not in summary["body"]
    assert state.requests.count(("GET", PERMISSION.format(login))) == (1 if looked_up else 0)
    assert _rows(repo) == [(1, login, "approve")]


@pytest.mark.parametrize(("login", "association", "role"), [
    ("stranger", "NONE", None),
    ("helper", "CONTRIBUTOR", None),
    ("newcomer", "FIRST_TIME_CONTRIBUTOR", None),
    ("first", "FIRST_TIMER", None),
    ("dev", "CONTRIBUTOR", "write"),  # the PR author, with write: not enough by default
    ("triager", "NONE", "triage"),
    ("auditor", "NONE", "auditor:write"),  # a custom role ranks as its base permission
])
def test_github_break_glass_refused_without_authority(repo, github, model, login, association, role):  # noqa: F811
    _server, state = github
    _push(repo, CRITICAL, "use eval")
    state.associations[login] = association
    if role:
        state.roles[login] = role
    state.add_issue_comment(login, "break glass")
    state.add_issue_comment(login, "Break glass!")  # asking twice: one look-up, one notice
    before = len(model[1].calls)
    result = _github_run(repo, github, model[0])
    review = json.loads(result.stdout)
    assert result.returncode == 3, result.stderr  # reviewed, and the verdict stands
    assert review["break_glass"] is False and review["verdict"] == "request_changes" and len(model[1].calls) > before
    assert state.reviews == [] and state.statuses[-1]["state"] == "failure"
    notice = [n for n in review["notices"] if "break-glass request" in n]
    assert notice == [f"A break-glass request from @{login} was ignored: they are not authorised to approve without review "
                      "(needs an author association of COLLABORATOR or MEMBER or OWNER, or the maintain permission or higher "
                      "on acme/widgets)."]
    (summary,) = state.bot_summaries()
    assert f"A break-glass request from `@{login}` was ignored" in summary["body"]
    assert state.requests.count(("GET", PERMISSION.format(login))) == 1
    assert _rows(repo) == [(0, None, "request_changes")]


def test_github_bots_never_break_glass(repo, github, model):  # noqa: F811
    _server, state = github
    _push(repo, CRITICAL, "use eval")
    for bot in ("dependabot[bot]", "renovate[bot]"):
        state.associations[bot] = "COLLABORATOR"
        state.roles[bot] = "admin"
        state.add_issue_comment(bot, "break glass")
    result = _github_run(repo, github, model[0])
    review = json.loads(result.stdout)
    assert result.returncode == 3 and review["break_glass"] is False and state.reviews == []
    assert not any("break-glass" in n for n in review["notices"])  # a bot's comment is not a request at all
    assert not any(path.endswith("/permission") for _method, path in state.requests)


def test_github_look_alike_forms_from_an_owner_do_not_break_glass(repo, github, model):  # noqa: F811
    _server, state = github
    _push(repo, CRITICAL, "use eval")
    state.associations["founder"] = "OWNER"
    for body in REFUSED:
        state.add_issue_comment("founder", body)
    result = _github_run(repo, github, model[0])
    review = json.loads(result.stdout)
    assert result.returncode == 3 and review["break_glass"] is False and review["verdict"] == "request_changes"
    assert state.reviews == [] and state.statuses[-1]["state"] == "failure"
    assert not any("break-glass" in n for n in review["notices"])  # not requests, so nothing was refused either


def test_github_permission_look_up_refused_is_not_authority_and_not_an_error(repo, github, model):  # noqa: F811
    _server, state = github
    _push(repo, CRITICAL, "use eval")
    state.roles["lead"] = "admin"
    state.failures[("GET", PERMISSION.format("lead"))] = [(403, {}, {"message": "Resource not accessible by integration"})]
    state.add_issue_comment("lead", "break glass")
    result = _github_run(repo, github, model[0])
    review = json.loads(result.stdout)
    assert result.returncode == 3 and review["break_glass"] is False and "could not be published" not in result.stderr
    assert any("break-glass request from @lead was ignored" in n for n in review["notices"])
    assert len(state.bot_summaries()) == 1 and "Traceback" not in result.stderr


def test_github_unknown_user_is_not_authorised(repo, github, model):  # noqa: F811
    _server, state = github
    _push(repo, CRITICAL, "use eval")
    state.add_issue_comment("ghost", "break glass")
    state.known_users.discard("ghost")  # a deleted account: GitHub says "ghost is not a user" (404)
    result = _github_run(repo, github, model[0])
    assert result.returncode == 3 and json.loads(result.stdout)["break_glass"] is False


def test_github_authority_settings_change_the_outcome(repo, github, model):  # noqa: F811
    _server, state = github
    _push(repo, CRITICAL, "use eval")
    state.associations["contractor"] = "COLLABORATOR"
    state.roles["contractor"] = "write"
    state.add_issue_comment("contractor", "break glass")
    # Only owners by association, and nobody below admin by role: the collaborator is refused.
    strict = _github_run(repo, github, model[0], AIPLANE_REVIEW__AUTHORITY__GITHUB_ASSOCIATIONS='["OWNER"]',
                         AIPLANE_REVIEW__AUTHORITY__GITHUB_MIN_PERMISSION="admin")
    assert strict.returncode == 3 and json.loads(strict.stdout)["break_glass"] is False
    assert "(needs an author association of OWNER, or the admin permission or higher on acme/widgets)" in strict.stdout
    # No association authorises, but write is enough: their role does.
    lenient = _github_run(repo, github, model[0], AIPLANE_REVIEW__AUTHORITY__GITHUB_ASSOCIATIONS="[]",
                          AIPLANE_REVIEW__AUTHORITY__GITHUB_MIN_PERMISSION="write")
    assert lenient.returncode == 0 and json.loads(lenient.stdout)["break_glass"] is True
    bad = _github_run(repo, github, model[0], AIPLANE_REVIEW__AUTHORITY__GITHUB_MIN_PERMISSION="none")
    assert bad.returncode == 2 and "github_min_permission" in bad.stderr


def test_break_glass_is_logged_with_the_user_name(repo, github, monkeypatch, caplog):  # noqa: F811
    from aiplane.config import load_settings
    from aiplane.review.ci import review_change
    from aiplane.review.plugins.context import ReviewOptions

    server, state = github
    _push(repo, CRITICAL, "use eval")
    state.base_sha, state.head_sha = repo.git("rev-parse", "main").strip(), repo.git("rev-parse", "HEAD").strip()
    state.associations["founder"] = "OWNER"
    state.add_issue_comment("stranger", "break glass")
    state.add_issue_comment("founder", "break glass")
    for name in [n for n in os.environ if n.startswith("AIPLANE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AIPLANE_DATA_DIR", str(repo.path.parent / "data"))
    environ = {"GITHUB_API_URL": server.url, "GITHUB_REPOSITORY": "acme/widgets", "GITHUB_REF": "refs/pull/7/merge",
               "GITHUB_TOKEN": gh.TOKEN}
    with caplog.at_level(logging.WARNING, logger="aiplane.review"):
        outcome = review_change(ReviewOptions(vcs="github", repo=repo.path), load_settings(), environ)
    assert outcome.break_glass and outcome.review.break_glass_by == "founder"
    (used,) = [r for r in caplog.records if r.getMessage() == "break glass"]
    assert used.fields["user"] == "founder" and used.fields["vcs"] == "github"
    (refused,) = [r for r in caplog.records if r.getMessage() == "break glass refused"]
    assert refused.fields["user"] == "stranger"
    assert not any("@example" in json.dumps(r.fields) for r in caplog.records if hasattr(r, "fields"))


# -- GitHub: dismissals ----------------------------------------------------------------------------


def test_github_wont_fix_from_an_unauthorised_user_does_not_silence_a_critical(repo, github, model):  # noqa: F811
    _server, state = github
    _push(repo, CRITICAL, "use eval")
    assert _github_run(repo, github, model[0]).returncode == 3
    (thread,) = state.roots()
    state.associations["dev"] = "CONTRIBUTOR"  # the PR author is judged like anyone else
    state.roles["dev"] = "write"
    state.reply(thread["id"], "dev", "Won't fix: acknowledged, this is fine.")
    _push(repo, CRITICAL + "# more\n", "more")
    result = _github_run(repo, github, model[0])
    review = json.loads(result.stdout)
    assert result.returncode == 3 and review["verdict"] == "request_changes"
    assert [f["severity"] for f in review["findings"]] == ["critical"]
    assert not any("were not raised again" in n for n in review["notices"])
    assert any(n.startswith("Won't fix / acknowledged / resolved from @dev did not dismiss any finding") for n in review["notices"])
    assert state.statuses[-1]["state"] == "failure" and state.reviews == []
    assert len(state.roots()) == 1  # the thread is still open: nothing new is posted
    # The same answer from a maintainer counts.
    state.roles["lead"] = "maintain"
    state.reply(thread["id"], "lead", "Won't fix, I'll take the risk.")
    _push(repo, CRITICAL + "# more\n# again\n", "again")
    result = _github_run(repo, github, model[0])
    review = json.loads(result.stdout)
    assert result.returncode == 0 and review["findings"] == [] and any("were not raised again" in n for n in review["notices"])


def test_github_thread_resolved_by_an_unauthorised_user_is_not_a_dismissal(repo, github, model):  # noqa: F811
    _server, state = github
    _push(repo, CRITICAL, "use eval")
    assert _github_run(repo, github, model[0]).returncode == 3
    (thread,) = state.roots()
    state.resolved[thread["id"]] = "dev"  # the PR author resolves our thread on their own PR
    state.roles["dev"] = "write"
    _push(repo, CRITICAL + "# more\n", "more")
    result = _github_run(repo, github, model[0])
    review = json.loads(result.stdout)
    assert result.returncode == 3 and [f["severity"] for f in review["findings"]] == ["critical"]
    assert any("from @dev did not dismiss any finding" in n for n in review["notices"])
    assert len(state.roots()) == 2 and "severity=critical" in state.roots()[-1]["body"]  # raised afresh
    # Resolved by someone authorised, it is respected. GraphQL gives no association for who
    # resolved a thread, so their repository role decides.
    state.roles["lead"] = "maintain"
    state.resolved[state.roots()[-1]["id"]] = "lead"
    _push(repo, CRITICAL + "# more\n# again\n", "again")
    result = _github_run(repo, github, model[0])
    assert result.returncode == 0 and json.loads(result.stdout)["findings"] == []


# -- GitLab ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("level", "accepted"), [(50, True), (40, True), (30, False), (20, False), (None, False)])
def test_gitlab_break_glass_needs_maintainer(repo, gitlab, model, level, accepted):  # noqa: F811
    _server, state = gitlab
    _push(repo, CRITICAL, "use eval")
    if level is not None:  # None: not a member of the project at all (404)
        state.access_levels["alice"] = level
    state.add_note("alice", "break glass")
    state.add_note("alice", "break-glass.")
    result = _gitlab_run(repo, gitlab, model[0], AIPLANE_REVIEW__APPROVE="true")
    review = json.loads(result.stdout)
    member = f"/api/v4/projects/{state.project_id}/members/all/{state.user_id('alice')}"
    assert review["break_glass"] is accepted
    if accepted:
        assert result.returncode == 0 and state.approved_by == {gl.BOT} and state.statuses[-1]["state"] == "success"
        assert "Break glass by alice" in state.statuses[-1]["description"]
        assert _rows(repo) == [(1, "alice", "approve")]
    else:
        assert result.returncode == 3 and state.approved_by == set() and state.statuses[-1]["state"] == "failed"
        assert [n for n in review["notices"] if "break-glass" in n] == [
            "A break-glass request from @alice was ignored: they are not authorised to approve without review "
            "(needs the Maintainer role or higher)."]
        assert "A break-glass request from `@alice` was ignored" in state.bot_notes()[0]["body"]
    assert state.requests.count(("GET", member)) == 1  # asked twice, looked up once


def test_gitlab_bot_members_never_break_glass(repo, gitlab, model):  # noqa: F811
    _server, state = gitlab
    _push(repo, CRITICAL, "use eval")
    bot = "project_42_bot_3f9a1c"  # another project access token's user, made Maintainer
    state.access_levels[bot] = 40
    state.add_note(bot, "break glass")
    result = _gitlab_run(repo, gitlab, model[0])
    review = json.loads(result.stdout)
    assert result.returncode == 3 and review["break_glass"] is False
    assert not any("break-glass" in n for n in review["notices"])


def test_gitlab_min_access_level_setting_lets_a_developer_break_glass(repo, gitlab, model):  # noqa: F811
    _server, state = gitlab
    _push(repo, CRITICAL, "use eval")
    state.access_levels["dev1"] = 30
    state.add_note("dev1", "break glass")
    assert _gitlab_run(repo, gitlab, model[0]).returncode == 3
    result = _gitlab_run(repo, gitlab, model[0], AIPLANE_REVIEW__AUTHORITY__GITLAB_MIN_ACCESS_LEVEL="30")
    review = json.loads(result.stdout)
    assert result.returncode == 0 and review["break_glass"] is True and state.statuses[-1]["state"] == "success"
    bad = _gitlab_run(repo, gitlab, model[0], AIPLANE_REVIEW__AUTHORITY__GITLAB_MIN_ACCESS_LEVEL="60")
    assert bad.returncode == 2 and "gitlab_min_access_level" in bad.stderr


def test_gitlab_acknowledged_or_resolved_by_a_developer_does_not_silence_a_critical(repo, gitlab, model):  # noqa: F811
    _server, state = gitlab
    _push(repo, CRITICAL, "use eval")
    assert _gitlab_run(repo, gitlab, model[0]).returncode == 3
    (discussion,) = state.discussions
    state.access_levels["dev1"] = 30
    state.reply(discussion["id"], "dev1", "Acknowledged.")
    state.resolve(discussion["id"], "dev1")
    _push(repo, CRITICAL + "# x\n", "same")
    result = _gitlab_run(repo, gitlab, model[0], AIPLANE_REVIEW__APPROVE="true")
    review = json.loads(result.stdout)
    assert result.returncode == 3 and [f["severity"] for f in review["findings"]] == ["critical"]
    assert state.approved_by == set() and state.statuses[-1]["state"] == "failed"
    assert any("from @dev1 did not dismiss any finding" in n for n in review["notices"])
    assert len(state.discussions) == 2  # raised afresh, since the old thread was closed under it
    # A Maintainer's acknowledgement on the live thread is respected.
    state.access_levels["lead"] = 40
    state.reply(state.discussions[-1]["id"], "lead", "Acknowledged, tracked in INFRA-12.")
    _push(repo, CRITICAL + "# x\n# y\n", "again")
    result = _gitlab_run(repo, gitlab, model[0], AIPLANE_REVIEW__APPROVE="true")
    assert result.returncode == 0 and json.loads(result.stdout)["findings"] == [] and state.approved_by == {gl.BOT}
