//! Flow demux: each frame goes to the one shard its flow belongs to (one `poll_ingress_single`
//! over at most `SHARD_SIZE` sockets); a SYN of a new flow to a shard with a designated listener,
//! or, with no room, to the SYN cache's rules (`half_open`); anything else to the empty set of
//! stray sockets.

use std::net::SocketAddrV4;

use smoltcp::{
    iface::PollIngressSingleResult,
    phy::{Device, RxToken as _},
    socket::tcp,
    time::Instant,
    wire::{IpEndpoint, TcpSeqNumber},
};

use xgate_xdp_common::syncookie::SynCookieMode;

use super::TcpServer;
use crate::wire::{FrameKind, TcpSegmentInfo};

impl TcpServer<'_> {
    /// Hands one frame of `device` to the stack, to the shard its flow (`kind`, classified from
    /// the same frame) belongs to. Returns whether the device gave the stack a frame.
    pub fn ingress<D: Device + ?Sized>(&mut self, now: Instant, device: &mut D, kind: &FrameKind) -> bool {
        self.now = now;
        match kind {
            FrameKind::Tcp(segment) => self.ingress_tcp(now, device, segment),
            _ => {
                self.iface.poll_ingress_single(now, device, &mut self.stray) != PollIngressSingleResult::None
            }
        }
    }

    /// A neighbour may have been learned (an ARP frame for this lane's address went in): every
    /// shard polls egress once, so sockets waiting for that neighbour can send. O(shards): call
    /// it only for ARP aimed at this lane's address, which the stack learns from, not for every
    /// ARP broadcast on the link.
    pub fn neighbours_changed(&mut self) {
        for shard in 0..self.shards.len() as u32 {
            self.mark_dirty(shard);
        }
    }

    fn ingress_tcp<D: Device + ?Sized>(
        &mut self,
        now: Instant,
        device: &mut D,
        segment: &TcpSegmentInfo,
    ) -> bool {
        let key = segment.flow.connection_key();
        if let Some(id) = self.flows.get(key) {
            let shard = self.conns[id as usize].shard;
            let result =
                self.iface
                    .poll_ingress_single(now, device, &mut self.shards[shard as usize].sockets);
            if self.socket(id).state() == tcp::State::Listen {
                // A RST in SYN-RECEIVED sends a socket back to LISTEN, with no peer. Until the
                // application settles it, it would take any SYN as a second listener of its
                // shard, for a flow the table never learns: close it (no peer, so no RST).
                self.socket(id).abort();
            }
            self.note_half_open_left(id);
            // The stack gives a segment to the first socket that takes it, and a listener takes
            // any SYN: a repeated SYN of this flow (or one that came after its socket closed but
            // before it was settled) may have landed on the shard's listener instead of the
            // flow's socket. That listener would then hold a connection no table knows, and the
            // shard would take no new ones: drop the SYN and let it listen again (the client
            // sends its SYN again, and finds the flow's own socket or, once settled, a listener).
            if segment.syn && !segment.ack && !segment.rst {
                if let Some(listener) = self.shards[shard as usize].listener {
                    if self.socket(listener).state() != tcp::State::Listen {
                        self.listen(listener);
                    }
                }
            }
            self.mark_dirty(shard);
            self.wake(id);
            return result != PollIngressSingleResult::None;
        }
        let to_listener = self.is_listen_port(segment.flow.dst_port) && !self.listen_port_closed;
        let new_connection =
            segment.syn && !segment.ack && !segment.rst && self.is_listen_port(segment.flow.dst_port);
        if to_listener && self.cookies.mode != SynCookieMode::Never {
            if new_connection && self.cookies.mode == SynCookieMode::Always {
                return self.answer_with_cookie(now, device);
            }
            if !segment.syn && segment.ack && !segment.rst {
                if let Some(took) = self.ingress_cookie_ack(now, device, segment) {
                    return took;
                }
            }
        }
        let at_bound = self.max_half_open > 0 && self.half_open >= self.max_half_open;
        let pool_full = self.listening.is_empty() && !self.listen_port_closed;
        if new_connection && (at_bound || (pool_full && self.half_open > 0)) {
            // Room for the SYN comes from the oldest half-open connection, if it has waited
            // long enough. Without room now (all are young, or every socket is taken and the
            // evicted one is free only once the application settles it), no answer: the client
            // sends its SYN again. A pool full of established connections alone is handled
            // below (dropped too, or refused with a RST).
            let evicted = self.evict_oldest_half_open(now);
            if !evicted || self.listening.is_empty() {
                if self.cookies.mode != SynCookieMode::Never {
                    // Under pressure: answered statelessly, taken up when the ACK comes.
                    return self.answer_with_cookie(now, device);
                }
                self.stats.syn_deferred += 1;
                return self.drop_frame(now, device);
            }
        }
        let Some(&shard) = self.listening.front().filter(|_| new_connection) else {
            if new_connection && !self.listen_port_closed && !self.reset_when_full {
                // Every socket holds an established connection: like a full listen backlog, no
                // answer; the client sends its SYN again and finds a socket once one is free.
                self.stats.syn_dropped_full += 1;
                return self.drop_frame(now, device);
            }
            if new_connection {
                self.stats.refused += 1;
            }
            return self.iface.poll_ingress_single(now, device, &mut self.stray)
                != PollIngressSingleResult::None;
        };
        let listener = self.shards[shard as usize]
            .listener
            .expect("a listening shard has a listener");
        // The SYN-ACK carries the connection's keyed ISN.
        let flow = &segment.flow;
        let isn = self.isn.isn(
            SocketAddrV4::new(flow.dst_ip.into(), flow.dst_port),
            SocketAddrV4::new(flow.src_ip.into(), flow.src_port),
            now.total_micros().max(0) as u64,
        );
        if self.socket(listener).listen_endpoint().port != flow.dst_port {
            // The shard's listener listens on the other port: it turns to this SYN's.
            self.listen_on(listener, flow.dst_port);
        }
        self.socket(listener)
            .set_next_initial_seq(Some(TcpSeqNumber(isn as i32)));
        let took = self.deliver(now, device, shard);
        let remote = IpEndpoint::new(
            smoltcp::wire::IpAddress::Ipv4(segment.flow.src_ip.into()),
            segment.flow.src_port,
        );
        let socket = self.socket(listener);
        if socket.state() == tcp::State::SynReceived
            && socket.remote_endpoint() == Some(remote)
            && self.accept(listener, key)
        {
            self.enter_half_open(listener, now);
            // The SYN-ACK goes out without an ARP exchange first (see `learn_neighbour`).
            self.learn_neighbour(segment, now);
        }
        took
    }

    /// Takes the device's frame and drops it unanswered. Returns whether there was one.
    pub(super) fn drop_frame<D: Device + ?Sized>(&mut self, now: Instant, device: &mut D) -> bool {
        let Some((rx, _)) = device.receive(now) else {
            return false;
        };
        rx.consume(|_| ());
        true
    }

    /// Hands the device's frame to the sockets of shard `shard`, whose egress then runs.
    pub(super) fn deliver<D: Device + ?Sized>(&mut self, now: Instant, device: &mut D, shard: u32) -> bool {
        let result = self
            .iface
            .poll_ingress_single(now, device, &mut self.shards[shard as usize].sockets);
        self.mark_dirty(shard);
        result != PollIngressSingleResult::None
    }

    /// Takes the source MAC of `segment` (a SYN a listener took, or a valid cookie's ACK) as its
    /// sender's link address. smoltcp learns neighbours only from ARP and sends at most one ARP
    /// request a second for all of them together; under a flood of spoofed SYNs (each of which
    /// would need one for its SYN-ACK) a real client's answers would wait up to a second for
    /// their turn. A frame's source MAC is as good as an ARP packet's word on the same link
    /// (neither is authenticated), and for a client behind a router nothing is learned: the
    /// stack asks for the router's address, not the client's.
    pub(super) fn learn_neighbour(&mut self, segment: &TcpSegmentInfo, now: Instant) {
        self.iface.fill_neighbor(
            smoltcp::wire::IpAddress::Ipv4(segment.flow.src_ip.into()),
            smoltcp::wire::HardwareAddress::Ethernet(smoltcp::wire::EthernetAddress(segment.src_mac)),
            now,
        );
    }
}
