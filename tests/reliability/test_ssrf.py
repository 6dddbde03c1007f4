"""The URL guard refuses every way of pointing at a private address, and the guarding proxy that
yt-dlp and attachment downloads go through refuses redirect hops, DNS names and HLS fragments that
lead there — with a resolver the test controls, so no real DNS is asked."""

from __future__ import annotations

import asyncio
import ipaddress
import subprocess
from pathlib import Path

import pytest

from core.errors import BadSource
from core.ingest.fetch import download_file, fetch
from core.ingest.guard import UrlGuard, is_public, system_resolver
from tests.fakes.media_server import FakeMediaServer

DNS = {
    "videos.example": ["93.184.216.34"],
    "v6.example": ["2606:4700::1111"],
    "loopback.attacker.test": ["127.0.0.1"],
    "rebind.attacker.test": ["93.184.216.34", "10.0.0.1"],
    "meta.attacker.test": ["169.254.169.254"],
    "v6loop.attacker.test": ["::1"],
    "127.0.0.1.nip.io": ["127.0.0.1"],
    "mapped.attacker.test": ["::ffff:10.1.2.3"],
    "intranet.corp": ["10.0.0.5"],
}


def resolver(host: str) -> list[str]:
    if host not in DNS:
        raise BadSource(f"I can't find the site `{host}` (DNS lookup failed).")
    return DNS[host]


REFUSED = [
    "http://127.0.0.1/v.mp4", "http://127.1/", "http://2130706433/", "http://0x7f000001/", "http://0177.0.0.1/",
    "http://0x7f.0.0.1/", "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/",
    "http://[0:0:0:0:0:ffff:169.254.169.254]/", "http://[::ffff:a9fe:a9fe]/",
    "http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/", "http://100.100.100.200/",
    "http://metadata.google.internal/computeMetadata/v1/", "http://metadata/", "http://10.0.0.1/",
    "http://0x0a.0.0.1/", "http://172.16.5.4/", "http://192.168.0.1/", "http://0.0.0.0/", "http://0/",
    "http://[::]/", "http://224.0.0.1/", "http://[ff02::1]/", "http://[fe80::1%25eth0]/",
    "http://255.255.255.255/", "http://240.0.0.1/", "http://198.18.0.1/", "http://[64:ff9b::7f00:1]/",
    "http://[2002:7f00:1::]/", "http://localhost:8080/", "http://videos.localhost/",
    "http://user:pass@127.0.0.1/", "http://videos.example@127.0.0.1/", "http://loopback.attacker.test/",
    "http://rebind.attacker.test/", "http://meta.attacker.test/", "http://v6loop.attacker.test/",
    "http://127.0.0.1.nip.io/", "http://mapped.attacker.test/", "http://no-such-host.test/",
    "ftp://videos.example/v.mp4", "file:///etc/passwd", "gopher://videos.example/", "javascript:alert(1)",
    "http:///v.mp4", "http://videos.example:0/",
]
ALLOWED = ["https://videos.example/watch?v=1", "http://93.184.216.34/v.mp4", "http://1572395042/",
           "http://[2606:4700::1111]/", "https://v6.example:8443/v.mp4", "http://intranet.corp/talk.mp4"]


@pytest.mark.parametrize("url", REFUSED)
def test_guard_refuses(url: str) -> None:
    with pytest.raises(BadSource):
        UrlGuard(frozenset({"intranet.corp"}), resolver=resolver).check(url)


@pytest.mark.parametrize("url", ALLOWED)
def test_guard_allows_public_and_allowed(url: str) -> None:
    UrlGuard(frozenset({"intranet.corp"}), resolver=resolver).check(url)


# Every special-purpose network of the IANA registries that a fetch must never reach, each checked
# at its first, middle and last address (the URL table above samples single addresses).
SPECIAL_NETWORKS = [
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/29", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
    "224.0.0.0/4", "240.0.0.0/4", "::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8", "2001:db8::/32",
    "::ffff:127.0.0.0/104", "::ffff:10.0.0.0/104", "64:ff9b::a00:0/120", "2002:a00::/24",
]


@pytest.mark.parametrize("net", SPECIAL_NETWORKS)
def test_no_address_of_a_special_network_is_public(net: str) -> None:
    network = ipaddress.ip_network(net)
    for ip in (network[0], network[network.num_addresses // 2], network[-1]):
        assert not is_public(ip), ip


def localhost_resolver(host: str) -> list[str]:
    """Resolves every name the way the system resolver does (getaddrinfo, here of `localhost`,
    answered from /etc/hosts without the network): the call that stalls the loop when a
    resolver is slow."""
    return system_resolver("localhost")


async def test_link_is_resolved_off_the_event_loop(tmp_path: Path) -> None:
    """fetch() checks the link's address with a real getaddrinfo; under the loop-blocking
    detector (tests/blocking.py) that call fails the test unless it runs in a thread."""
    guard = UrlGuard(resolver=localhost_resolver)
    with pytest.raises(BadSource, match="private network"):
        await fetch("http://videos.example/v.mp4", tmp_path / "w", guard, max_bytes=2**20, max_seconds=60)


async def test_attachment_is_resolved_off_the_event_loop(tmp_path: Path) -> None:
    """The same for each hop of an attachment download."""
    guard = UrlGuard(resolver=localhost_resolver)
    with pytest.raises(BadSource, match="private network"):
        await download_file("http://files.example/a.mp4", tmp_path / "a.mp4", guard, 2**20)


@pytest.fixture
async def site(short_lectures, tmp_path: Path):
    hls = tmp_path / "hls"
    hls.mkdir()
    await asyncio.to_thread(subprocess.run, ["ffmpeg", "-v", "error", "-i", str(short_lectures["volcano"]), "-c",
                            "copy", "-f", "hls", "-hls_time", "2", "-hls_list_size", "0", str(hls / "index.m3u8")],
                            check=True)
    files: dict[str, Path | bytes] = {"lecture.mp4": short_lectures["volcano"]}
    files.update({f"hls/{p.name}": p.read_bytes() for p in hls.iterdir()})
    evil = (hls / "index.m3u8").read_text().replace("index0.ts", "http://169.254.169.254/index0.ts")
    files["evil/index.m3u8"] = evil.encode()
    server = FakeMediaServer(files)
    await server.start()
    yield server
    await server.stop()


GUARD = UrlGuard(frozenset({"127.0.0.1"}), resolver=resolver)


async def get(url: str, work: Path, max_mb: float = 50) -> object:
    return await fetch(url, work, GUARD, max_bytes=int(max_mb * 2**20), max_seconds=600)


async def test_ytdlp_redirect_to_metadata_is_refused(site, tmp_path: Path) -> None:
    site.redirects["go.mp4"] = "http://169.254.169.254/latest/meta-data/"
    with pytest.raises(BadSource, match="private network"):
        await get(f"{site.base}/go.mp4", tmp_path / "w")


async def test_ytdlp_redirect_to_name_resolving_to_loopback_is_refused(site, tmp_path: Path) -> None:
    port = site.base.rsplit(":", 1)[1]
    site.redirects["go2.mp4"] = f"http://loopback.attacker.test:{port}/lecture.mp4"
    with pytest.raises(BadSource, match="private network"):
        await get(f"{site.base}/go2.mp4", tmp_path / "w")
    assert [n for n, _ in site.requests] == ["go2.mp4"]  # the loopback name was never reached


async def test_hls_fragment_pointing_at_metadata_is_refused(site, tmp_path: Path) -> None:
    with pytest.raises(BadSource, match="private network"):
        await get(f"{site.base}/evil/index.m3u8", tmp_path / "w")


async def test_size_limit_applies_to_fragmented_downloads(site, tmp_path: Path) -> None:
    size = sum(len(b) for n, b in site.files.items() if n.startswith("hls/") and isinstance(b, bytes))
    with pytest.raises(BadSource, match="larger than my limit"):
        await get(f"{site.base}/hls/index.m3u8", tmp_path / "w", max_mb=size / 3 / 2**20)
    got = await get(f"{site.base}/hls/index.m3u8", tmp_path / "ok")  # and under the limit it works
    assert got.path.stat().st_size > 0  # type: ignore[attr-defined]


async def test_size_limit_applies_to_direct_downloads(site, tmp_path: Path) -> None:
    with pytest.raises(BadSource, match="larger than my limit"):
        await get(f"{site.base}/lecture.mp4", tmp_path / "w", max_mb=0.01)
