"""A small RTSP camera for tests: ffmpeg packetises a clip as RTP; this server speaks RTSP over TCP to one client.

ffmpeg's RTSP muxer cannot listen (``-rtsp_flags listen`` is an input option; the output only connects to a
server), so this plays the server: OPTIONS, DESCRIBE (ffmpeg's SDP), SETUP (TCP interleaved), PLAY (RTP
from ffmpeg on a loopback UDP port, forwarded as ``$``-framed packets), TEARDOWN. It plays the clip
``plays`` times, one client at a time, in real time, then stops listening, like a camera that goes away.
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import threading
from pathlib import Path


def _sdp(ffmpeg: str, clip: Path) -> str:
    with tempfile.TemporaryDirectory() as folder:
        sdp = Path(folder) / "clip.sdp"
        subprocess.run(
            [ffmpeg, "-hide_banner", "-loglevel", "error", "-i", str(clip), "-frames:v", "1", "-c", "copy", "-an",
             "-f", "rtp", "-sdp_file", str(sdp), "rtp://127.0.0.1:9"],
            check=True, timeout=30, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        lines = [line for line in sdp.read_text().splitlines() if line and not line.startswith("SDP:")]
    return "\r\n".join([*lines, "a=control:trackID=0"]) + "\r\n"


class RtspCamera:
    """``rtsp://127.0.0.1:PORT/cam`` playing ``clip``; :meth:`close` stops it."""

    def __init__(self, ffmpeg: str, clip: Path, *, plays: int = 1):
        self.ffmpeg, self.clip, self.plays = ffmpeg, clip, plays
        self.sdp = _sdp(ffmpeg, clip)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"rtsp://127.0.0.1:{self.port}/cam"
        self.clients = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        with self.listener:
            while self.clients < self.plays and not self._stop.is_set():
                self.listener.settimeout(0.5)
                try:
                    conn, _ = self.listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                with conn:
                    try:
                        self._session(conn)
                    except OSError:
                        pass  # the client reset the connection; a play counts only once it was streamed

    def _session(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        streamer: threading.Thread | None = None
        stop_stream = threading.Event()
        while not self._stop.is_set():
            request = self._read_request(reader)
            if request is None:
                break
            method, headers = request
            reply = {"CSeq": headers.get("cseq", "0")}
            body = ""
            if method == "OPTIONS":
                reply["Public"] = "OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER"
            elif method == "DESCRIBE":
                reply.update({"Content-Base": f"{self.url}/", "Content-Type": "application/sdp"})
                body = self.sdp
            elif method == "SETUP":
                reply.update({"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1", "Session": "4242"})
            elif method == "PLAY":
                reply["Session"] = "4242"
            elif method == "TEARDOWN":
                self._send(conn, reply, body)
                break
            self._send(conn, reply, body)
            if method == "PLAY" and streamer is None:
                self.clients += 1
                streamer = threading.Thread(target=self._stream, args=(conn, stop_stream), daemon=True)
                streamer.start()
        stop_stream.set()
        if streamer is not None:
            streamer.join(timeout=30)  # the clip plays out (or the client leaves) before the next client

    @staticmethod
    def _read_request(reader) -> tuple[str, dict[str, str]] | None:
        line = reader.readline()
        while line in (b"\r\n", b"\n"):
            line = reader.readline()
        if not line:
            return None
        headers = {}
        while (header := reader.readline()) not in (b"\r\n", b"\n", b""):
            key, _, value = header.decode(errors="replace").partition(":")
            headers[key.strip().lower()] = value.strip()
        if int(headers.get("content-length", 0)):
            reader.read(int(headers["content-length"]))
        return line.decode(errors="replace").split(" ")[0], headers

    @staticmethod
    def _send(conn: socket.socket, headers: dict[str, str], body: str) -> None:
        if body:
            headers["Content-Length"] = str(len(body.encode()))
        text = "RTSP/1.0 200 OK\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n" + body
        conn.sendall(text.encode())

    def _stream(self, conn: socket.socket, stop: threading.Event) -> None:
        """Run ffmpeg in real time to a loopback UDP port and forward every RTP packet on channel 0."""
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        udp.bind(("127.0.0.1", 0))
        udp.settimeout(0.5)
        process = subprocess.Popen(
            [self.ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-i", str(self.clip), "-c", "copy", "-an", "-f", "rtp",
             f"rtp://127.0.0.1:{udp.getsockname()[1]}?pkt_size=1200"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            while not stop.is_set() and not self._stop.is_set():
                try:
                    packet = udp.recv(65536)
                except TimeoutError:
                    if process.poll() is not None:
                        break  # the clip has played out
                    continue
                conn.sendall(b"$\x00" + len(packet).to_bytes(2, "big") + packet)
        except OSError:
            pass  # the client went away
        finally:
            process.kill()
            process.wait()
            udp.close()
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
