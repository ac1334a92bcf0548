"""Which node API calls a browser may make: chair-only names, and the calls only the local CLI may make.

The store enforces authority by the node's role; this adds the chair PIN on top for every request
that does not carry the node's local API token (meshmeet/api_token.py): being on loopback, or
sending no browser headers, grants nothing. Pure functions over plain values; this module must
never import aiohttp and never decide anything from request bodies beyond the API name and action.
"""

from __future__ import annotations

from collections.abc import Mapping

CHAIR_APIS = frozenset({
    "meeting_create", "meeting_update", "agenda_add", "agenda_update", "doc_add", "motion_open",
    "motion_close", "announce", "feedback_reply", "briefing", "lora_alert", "lora_send", "slide_show",
    "feedback_hide", "citizen_inbox", "zalo_status", "zalo_retry",
})
"""Calls that change the meeting for everyone: without the local token they need a chair session."""

DEVICE_APIS = frozenset({"checkin", "vote", "speak_request", "feedback"})
"""What a hall's tablet does for the hall: once the site sets a device PIN, only a paired device
(web/app/devices.py), the chair's session or the local CLI may call them."""

PRESENT_SOCKET = "/media/ws/present"
"""The presenter's and the hall's speaking page's socket: behind the same pairing as DEVICE_APIS."""

LOCAL_ONLY_APIS = frozenset({"doc_add", "media_test_rate_cap", "media_test_send", "sync_test_pace", "release_publish",
                             "recovery_deliver", "recovery_release", "recovery_status",
                             "citizen_submit", "citizen_submit_page", "citizen_lookup", "zalo_webhook"})
"""Only with the local token: doc_add and release_publish name a file on the node (browsers use the
upload route; a release is published with `meshmeet release publish`, which holds the admin key);
citizen_submit/citizen_lookup only through the resident page's routes (web/citizens_page.py), which
check the form and apply the rate limits first (citizen_submit_page takes only the forms that page
checked: no JSON can be one)."""


def needs_chair(name: str, method: str, query: Mapping[str, str]) -> bool:
    """Chair-only: CHAIR_APIS, and `floor` / `ingest` unless it is a GET asking only for the status."""
    if name in ("floor", "ingest"):
        return method != "GET" or query.get("action", "status") != "status"
    return name in CHAIR_APIS
