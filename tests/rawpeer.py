#!/usr/bin/env python3
"""A TCP peer on a raw AF_PACKET socket, for xgate's flow-layer tests: it owns an address the
kernel does not (it answers ARP for it itself), so no kernel stack interferes with what it sends
or answers. Modes:

  halfopen  SYN, then never the final ACK: reports the SYN-ACKs and the RST the gateway sends.
  retrans   handshake, then the same data segment again and again: reports the RST.
  vanish    handshake, a request for a large response, takes (and ACKs) the first `--take`
            bytes, then falls silent mid-response with data still in flight: reports the
            retransmissions it sees while silent, and the RST.

(SYN floods come from `xgate lab flood`, which sends several times faster than Python can.)

After a RST, each mode sends one stray segment of the dead flow (it should die in
XDP). Output: one JSON line.
"""
import argparse, json, random, socket, struct, time

ETH_P_ALL = 0x0003


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def mac(text):
    return bytes(int(x, 16) for x in text.split(":"))


def tcp_frame(src_mac, dst_mac, src_ip, dst_ip, sport, dport, seq, ack, flags, payload=b""):
    src, dst = socket.inet_aton(src_ip), socket.inet_aton(dst_ip)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0) + payload
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), random.randint(0, 65535), 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return dst_mac + src_mac + b"\x08\x00" + ip + tcp


class Peer:
    def __init__(self, args):
        self.args = args
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.bind((args.iface, 0))
        self.sock.settimeout(0.05)
        self.mac = mac(args.mac)
        self.gw_mac = mac(args.gw_mac)

    def send(self, seq, ack, flags, payload=b""):
        a = self.args
        self.sock.send(tcp_frame(self.mac, self.gw_mac, a.ip, a.gw_ip, a.port, a.gw_port, seq, ack, flags, payload))

    def poll(self):
        """One frame for us: answers ARP for our address; returns (flags, seq, ack, payload
        length) of TCP."""
        try:
            frame = self.sock.recv(4096)
        except socket.timeout:
            return None
        a = self.args
        if len(frame) < 42:
            return None
        ethertype = struct.unpack("!H", frame[12:14])[0]
        if ethertype == 0x0806 and frame[38:42] == socket.inet_aton(a.ip) and frame[20:22] == b"\x00\x01":
            reply = (frame[6:12] + self.mac + b"\x08\x06" + b"\x00\x01\x08\x00\x06\x04\x00\x02"
                     + self.mac + socket.inet_aton(a.ip) + frame[22:28] + frame[28:32])
            self.sock.send(reply)
            return None
        if ethertype != 0x0800 or frame[23] != 6 or frame[30:34] != socket.inet_aton(a.ip):
            return None
        ihl = (frame[14] & 0x0F) * 4
        t = 14 + ihl
        sport, dport, seq, ack, offset, flags = struct.unpack("!HHIIBB", frame[t:t + 14])
        if sport != a.gw_port or dport != a.port:
            return None
        ip_total = struct.unpack("!H", frame[16:18])[0]
        return flags, seq, ack, ip_total - ihl - (offset >> 4) * 4

    def wait(self, want, seconds):
        """Frames until one whose flags include `want`; returns (frame, every frame seen)."""
        seen = []
        deadline = time.time() + seconds
        while time.time() < deadline:
            got = self.poll()
            if got is None:
                continue
            seen.append((time.time(), got))
            if got[0] & want:
                return got, seen
        return None, seen


SYN, ACK, RST, PSH = 0x02, 0x10, 0x04, 0x08


def halfopen(peer, args):
    start = time.time()
    peer.send(1000, 0, SYN)
    synacks, rst_at = 0, None
    deadline = start + args.seconds
    while time.time() < deadline:
        got = peer.poll()
        if got is None:
            continue
        flags = got[0]
        if flags & SYN and flags & ACK:
            synacks += 1
        if flags & RST:
            rst_at = time.time() - start
            break
    if rst_at is not None:
        time.sleep(0.3)
        peer.send(1001, 1, ACK)  # a stray segment of the dead flow
    return {"synacks": synacks, "rst_after_s": rst_at}


def handshake(peer, iss):
    """SYN with `iss`, the SYN-ACK, our ACK: the gateway's next sequence number, or None."""
    peer.send(iss, 0, SYN)
    got, _ = peer.wait(SYN, 3)
    if got is None or not got[0] & ACK:
        return None
    their = got[1] + 1
    peer.send(iss + 1, their, ACK)
    return their


def retrans(peer, args):
    start = time.time()
    their = handshake(peer, 5000)
    if their is None:
        return {"error": "no SYN-ACK"}
    data = b"GET /partial HTTP/1.1\r\nHost: x\r\n"  # a head that never ends
    sent, rst_at = 0, None
    deadline = start + args.seconds
    next_send = time.time()
    while time.time() < deadline and rst_at is None:
        if time.time() >= next_send and sent < args.repeats:
            peer.send(5001, their, ACK | PSH, data)
            sent += 1
            next_send = time.time() + args.gap
        got = peer.poll()
        if got is not None and got[0] & RST:
            rst_at = time.time() - start
    if rst_at is not None:
        time.sleep(0.3)
        peer.send(5001 + len(data), their, ACK)
    return {"data_segments_sent": sent, "rst_after_s": rst_at}


def vanish(peer, args):
    start = time.time()
    their = handshake(peer, 7000)
    if their is None:
        return {"error": "no SYN-ACK"}
    request = ("GET %s HTTP/1.1\r\nHost: gw\r\n\r\n" % args.path).encode()
    peer.send(7001, their, ACK | PSH, request)
    mine = 7001 + len(request)
    taken, silent_at, rst_at, retransmitted = 0, None, None, 0
    highest = their  # one past the highest sequence number seen
    deadline = start + args.seconds
    while time.time() < deadline:
        got = peer.poll()
        if got is None:
            continue
        flags, seq, _, length = got
        if flags & RST:
            rst_at = time.time()
            break
        if length == 0:
            continue
        end = (seq + length) & 0xFFFFFFFF
        if silent_at is not None and 0 < (highest - seq) & 0xFFFFFFFF < 1 << 31:
            retransmitted += 1  # a range already seen, sent again
        if 0 < (end - highest) & 0xFFFFFFFF < 1 << 31:
            highest = end
        if silent_at is None and seq == their:  # in order: take it and ACK it
            their = end
            taken += length
            if taken >= args.take:
                silent_at = time.time()  # from here on, nothing more from this peer
            else:
                peer.send(mine, their, ACK)
    result = {
        "taken": taken,
        "retransmissions_seen": retransmitted,
        "silent_after_s": None if silent_at is None else silent_at - start,
        "rst_after_silence_s": None if rst_at is None or silent_at is None else rst_at - silent_at,
    }
    if rst_at is not None:
        time.sleep(0.3)
        peer.send(mine, their, ACK)
    return result


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["halfopen", "retrans", "vanish"])
    p.add_argument("--iface", required=True)
    p.add_argument("--ip", default="10.77.0.77")
    p.add_argument("--mac", default="02:99:00:00:00:77")
    p.add_argument("--port", type=int, default=41000)
    p.add_argument("--gw-ip", default="10.77.0.2")
    p.add_argument("--gw-mac", default="02:77:00:00:00:02")
    p.add_argument("--gw-port", type=int, default=80)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--repeats", type=int, default=8)
    p.add_argument("--gap", type=float, default=0.3)
    p.add_argument("--path", default="/big.bin")
    p.add_argument("--take", type=int, default=20000)
    args = p.parse_args()
    peer = Peer(args)
    result = {"halfopen": halfopen, "retrans": retrans, "vanish": vanish}[args.mode](peer, args)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
