"""The page an email link opens, and its confirm form (SPEC §8 Email).

``GET /email/decide?t=…`` verifies the link and shows the exact call in full with a confirm
form; it never decides, so link scanners that prefetch change nothing. ``POST /email/decide``
decides, and only with the link's token, a CSRF token that matches the cookie the page set
(double submit, ``SameSite=Strict``), the same version of the arguments the message showed,
and every rule of the other channels: the gate checks the person's group, quorum, and that
they are not the requester. Pages are HTML-escaped (Jinja2 autoescape), never cached or
framed, and carry a strict Content Security Policy.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from http import HTTPStatus

import jinja2
from aiohttp import web

from adapters.email.links import Link, LinkError, read_link
from bot.domain import Approver, Platform, Review, Shown, Verdict
from bot.errors import Conflict, NotAuthorized, NotFound, RequestError
from bot.service import Gate

log = logging.getLogger(__name__)

CSRF_COOKIE = "signoff_email_csrf"
CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
REASON_MAX = 2000

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("adapters.email", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


class EmailPages:
    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/email/decide", self.show), web.post("/email/decide", self.confirm)]

    def _page(self, status: int = 200, **context: object) -> web.Response:
        html = _TEMPLATES.get_template("page.html").render(**context)
        response = web.Response(text=html, status=status, content_type="text/html")
        response.headers["Content-Security-Policy"] = CSP
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    def _refusal(self, status: HTTPStatus, message: str) -> web.Response:
        return self._page(int(status), error=message, r=None, link=None)

    async def show(self, request: web.Request) -> web.StreamResponse:
        token = request.query.get("t", "")
        try:
            link = read_link(token, self.gate.verifier, self.gate.now())
            found = await self.gate.get(link.request_id)
        except LinkError as exc:
            return self._refusal(HTTPStatus.FORBIDDEN, exc.message)
        except NotFound:
            return self._refusal(HTTPStatus.NOT_FOUND, "this request no longer exists")
        csrf = secrets.token_urlsafe(32)
        response = self._page(
            r=found,
            link=link,
            token=token,
            csrf=csrf,
            error="",
            arguments=json.dumps(dict(found.current_arguments), indent=2, ensure_ascii=False),
            changed=found.current_sha256 != link.arguments_sha256,
        )
        response.set_cookie(
            CSRF_COOKIE, csrf, httponly=True, samesite="Strict", path="/email/", max_age=3600
        )
        return response

    async def confirm(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        token, sent = str(form.get("t", "")), str(form.get("csrf", ""))
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if not sent or not cookie or not hmac.compare_digest(sent, cookie):
            return self._refusal(
                HTTPStatus.FORBIDDEN,
                "this form was not sent from its own page; open the link again",
            )
        reason = str(form.get("reason", "")).strip()[:REASON_MAX]
        try:
            link = read_link(token, self.gate.verifier, self.gate.now())
            approver, memberships = self._approver(link)
            await self.gate.decide(
                link.request_id,
                approver,
                link.verdict,
                reason,
                memberships=memberships,
                # The page showed the arguments whole; the gate refuses if they changed.
                review=Review(Shown.FULL, "email_page", link.arguments_sha256),
            )
        except (NotAuthorized, LinkError) as exc:
            return self._refusal(HTTPStatus.FORBIDDEN, exc.diagnostics())
        except NotFound:
            return self._refusal(HTTPStatus.NOT_FOUND, "this request no longer exists")
        except Conflict as exc:
            return self._refusal(HTTPStatus.CONFLICT, exc.diagnostics())
        except RequestError as exc:
            return self._refusal(HTTPStatus.BAD_REQUEST, exc.diagnostics())
        log.info("email: %s recorded on %s by %s", link.verdict.value, link.request_id, link.person)
        done = "approved" if link.verdict is Verdict.APPROVE else "denied"
        return self._page(done=done, r=await self.gate.get(link.request_id), link=link, error="")

    def _approver(self, link: Link) -> tuple[Approver, frozenset[str]]:
        """The person the link was sent to, still at that address, and the groups with an
        email route that list them. Raises ``NotAuthorized``."""
        policy = self.gate.policy
        person = policy.people.get(link.person)
        if person is None or (person.email or "").casefold() != link.address.casefold():
            raise NotAuthorized("this link's person no longer has this address in the policy")
        groups = frozenset(
            name
            for name, spec in policy.groups.items()
            if spec.email is not None and link.person in spec.members
        )
        approver = Approver(
            Platform.EMAIL,
            "email",
            link.address.casefold(),
            person.name or link.person,
            link.address,
            via="email_link",
            person=link.person,
        )
        return approver, groups
