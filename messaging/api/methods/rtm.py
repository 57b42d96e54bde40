"""rtm.connect and rtm.start: boot a realtime client."""

from __future__ import annotations

from typing import Any

from messaging.api.registry import ApiCall, Args, PreEncoded, SlackBool, api_method
from messaging.realtime.admission import admit_boot
from messaging.realtime.boot import BootOptions, rtm_connect, rtm_start


class ConnectArgs(Args):
    batch_presence_aware: SlackBool = False
    presence_sub: SlackBool = False


@api_method("rtm.connect", ConnectArgs, tier=1)
def connect(call: ApiCall) -> dict[str, Any]:
    """A websocket URL (with a one-time ticket), self, team and the event cursor."""
    admit_boot(call.caller)
    return rtm_connect(
        call.caller, call.ws_base_url, BootOptions(batch_presence_aware=call.args.batch_presence_aware)
    )


class StartArgs(ConnectArgs):
    no_latest: SlackBool = False
    lean: SlackBool = False
    simple_latest: SlackBool = False
    mpim_aware: SlackBool = True
    no_unreads: SlackBool = False


@api_method("rtm.start", StartArgs, tier=1)
def start(call: ApiCall) -> PreEncoded:
    """The state of the world the caller can see, consistent with the event cursor it returns."""
    admit_boot(call.caller)
    args = call.args
    options = BootOptions(
        no_latest=args.no_latest, lean=args.lean, batch_presence_aware=args.batch_presence_aware
    )
    boot = rtm_start(call.caller, call.ws_base_url, options, gzip=call.accepts_gzip)
    return PreEncoded(boot.body, gzipped=boot.gzipped)
