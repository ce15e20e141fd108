"""Short Slack messages around a card: decision and reminder thread replies, escalation pages
and the one-line ephemeral refusals a clicker sees.

Mentions are only ever built from ids in the policy (``<!subteam^S…>``, ``<@U…>``) or the
fixed ``<!here>`` of a page; everything from an agent or a human is escaped. Pure functions.
"""

from __future__ import annotations

from collections.abc import Sequence

from adapters.slack.cards import decision_text, slack_date
from adapters.slack.text import escape, inline_code, mention_group, mention_user
from bot.domain import Post, Request, Vote
from bot.errors import Conflict, NotAuthorized, NotFound, RequestError, SignoffError
from bot.policy.model import SlackRoute


def decision_reply(request: Request, votes: Sequence[Vote]) -> str:
    return decision_text(request, votes)


def group_mention(group: str, route: SlackRoute | None) -> str:
    """``<!subteam^S…>`` when the group has a Slack user group, else its users as mentions,
    else the group's name."""
    if route is not None:
        if route.usergroup and (mention := mention_group(route.usergroup)):
            return mention
        users = [m for u in route.users if (m := mention_user(u))]
        if users:
            return " ".join(users)
    return f"the *{escape(group)}* approvers"


def reminder_text(request: Request, group: str, route: SlackRoute | None) -> str:
    deadline = f" before {slack_date(request.deadline)}" if request.deadline else ""
    return (
        f"\N{ALARM CLOCK} Reminder: {group_mention(group, route)}, this request "
        f"({inline_code(request.call.tool)} from agent {inline_code(request.agent_id)}) "
        f"still needs a decision{deadline}. If nobody decides, it is denied."
    )


def archive_link(post: Post) -> str:
    """A link to a posted card (Slack resolves /archives/… in the reader's workspace)."""
    return f"https://slack.com/archives/{post.channel}/p{post.message_id.replace('.', '')}"


def page_text(request: Request, posts: Sequence[Post]) -> str:
    links = ", ".join(f"<{archive_link(p)}|{escape(p.group)}>" for p in posts)
    where = f" Cards: {links}." if links else " No card could be posted; decide in the console."
    deadline = f"; it is denied at {slack_date(request.deadline)}" if request.deadline else ""
    return (
        f"<!here> \N{POLICE CARS REVOLVING LIGHT} Escalation: {inline_code(request.call.tool)} "
        f"from agent {inline_code(request.agent_id)} (request `{escape(request.id)}`) has no "
        f"decision yet{deadline}.{where}"
    )


def refusal_text(error: SignoffError) -> str:
    """One clear line for the clicker (only they see it)."""
    if isinstance(error, NotAuthorized):
        return f"\N{NO ENTRY SIGN} Not recorded: {escape(error.message)}."
    if isinstance(error, NotFound):
        return "\N{NO ENTRY SIGN} Not recorded: this request no longer exists."
    if isinstance(error, Conflict):
        return f"\N{NO ENTRY SIGN} Not recorded: {escape(error.message)}."
    if isinstance(error, RequestError):
        return f"\N{NO ENTRY SIGN} Not recorded: {escape(error.message)}."
    return "\N{WARNING SIGN} signoff could not record your decision right now; try again."


def vote_recorded_text(request: Request, votes: Sequence[Vote]) -> str:
    approvals = len({v.approver.key for v in votes if v.verdict.value == "approve"})
    return (
        f"\N{WHITE HEAVY CHECK MARK} Your approval is recorded ({approvals} of "
        f"{max(request.requirement.required, 1)}); the card updates when the request is decided."
    )


__all__ = [
    "archive_link",
    "decision_reply",
    "group_mention",
    "page_text",
    "refusal_text",
    "reminder_text",
    "vote_recorded_text",
]
