//! Socket roles: a listener that took a SYN becomes a connection and hands listening to another
//! free socket of its shard; a settled socket goes back to free, and listens once the RST of its
//! last connection has gone out.

use smoltcp::socket::tcp;

use super::{ConnId, Role, TcpServer};

impl TcpServer<'_> {
    /// The designated listener `id` took a SYN: enter its flow, and let another free socket of
    /// the shard listen. Returns whether it did: entering the flow cannot fail (the table holds
    /// as many entries as there are sockets), and if it did, the SYN is aborted.
    pub(super) fn accept(&mut self, id: ConnId, key: u64) -> bool {
        if self.flows.insert(key, id).is_err() {
            self.socket(id).abort();
            return false;
        }
        self.stats.accepted += 1;
        let shard_index = self.conns[id as usize].shard;
        self.conns[id as usize].role = Role::Connected { key };
        let shard = &mut self.shards[shard_index as usize];
        shard.listener = None;
        shard.members.push(id);
        self.wake(id);
        if let Some(next) = self.take_ready_free(shard_index) {
            self.listen(next);
        } else if let Some(at) = self.listening.iter().position(|&s| s == shard_index) {
            self.listening.remove(at);
        }
        true
    }

    /// Whether socket `id` was aborted and its RST has not gone out yet: smoltcp sends the RST
    /// of an aborted socket with the next egress, from the connection's tuple, and `listen`
    /// forgets the tuple. Such a socket waits in its shard's free list until that egress.
    fn rst_pending(&mut self, id: ConnId) -> bool {
        let socket = self.socket(id);
        socket.state() == tcp::State::Closed && socket.remote_endpoint().is_some()
    }

    /// Takes a free socket of shard `shard_index` that may listen now (none with a RST still
    /// to send). A shard has at most `SHARD_SIZE` free sockets.
    fn take_ready_free(&mut self, shard_index: u32) -> Option<ConnId> {
        let free_count = self.shards[shard_index as usize].free.len();
        for at in (0..free_count).rev() {
            let id = self.shards[shard_index as usize].free[at];
            if !self.rst_pending(id) {
                return Some(self.shards[shard_index as usize].free.swap_remove(at));
            }
        }
        None
    }

    /// After shard `shard_index`'s egress: if it has free sockets but no listener (each had a
    /// RST to send when it was freed), one of them listens now. `egress_done`: the egress sent
    /// everything the shard's sockets could send; a RST still pending then cannot go out now
    /// (no link-layer address for its peer, as for a spoofed source, or no transmit frame), and
    /// the shard must not stop taking connections for it: that socket listens, its RST dropped.
    pub(super) fn restore_listener(&mut self, shard_index: u32, egress_done: bool) {
        let shard = &self.shards[shard_index as usize];
        if shard.listener.is_some() || shard.free.is_empty() || self.listen_port_closed {
            return;
        }
        let id = match self.take_ready_free(shard_index) {
            Some(id) => id,
            None if egress_done => {
                self.stats.rst_dropped += 1;
                self.shards[shard_index as usize]
                    .free
                    .pop()
                    .expect("checked: not empty")
            }
            None => return,
        };
        self.listen(id);
        self.listening.push_back(shard_index);
    }

    pub(super) fn listen(&mut self, id: ConnId) {
        self.listen_on(id, self.listen_port);
    }

    /// Makes `id` its shard's listener, listening on `port` (one of the listen ports).
    pub(super) fn listen_on(&mut self, id: ConnId, port: u16) {
        let shard_index = self.conns[id as usize].shard;
        // A listener that took a SYN and is made to listen again must not keep the egress
        // silence of that SYN's peer (see `forget_egress_state`).
        self.forget_egress_state(id);
        let socket = self.socket(id);
        socket.abort();
        socket.listen(port).expect("the listen port is not zero");
        self.conns[id as usize].role = Role::Listening;
        self.shards[shard_index as usize].listener = Some(id);
    }

    /// smoltcp keeps per-socket egress state beside the socket (a neighbour it waits for, and
    /// a silence of up to a second before it tries again). A socket reused for a new peer must
    /// not inherit its last peer's: taken out of its set and put back, it starts afresh, in the
    /// same slot (the only free one), so its handle does not change.
    fn forget_egress_state(&mut self, id: ConnId) {
        let conn = &mut self.conns[id as usize];
        let sockets = &mut self.shards[conn.shard as usize].sockets;
        let socket = sockets.remove(conn.handle);
        let handle = sockets.add(socket);
        debug_assert_eq!(handle, conn.handle, "the freed slot is the one reused");
        conn.handle = handle;
    }

    /// A free socket listens if its shard has no listener; otherwise it waits in the free list.
    /// A free outbound socket waits in the outbound free list.
    pub(super) fn make_free(&mut self, id: ConnId) {
        let shard_index = self.conns[id as usize].shard;
        // A closed or TIME-WAIT socket is left as it is: aborting it would send its old peer a
        // RST. An open one (a listener that fell back, at shutdown) is closed.
        if self.socket(id).is_open() {
            self.socket(id).abort();
        }
        if self.conns[id as usize].outbound {
            // Reused once the shard's egress has sent what the socket still has for its last
            // peer (the ACK of a FIN, a RST).
            let passes = self.shards[shard_index as usize].egress_passes;
            let conn = &mut self.conns[id as usize];
            conn.role = Role::Free;
            conn.freed_at_pass = passes;
            self.outbound_free.push_back(id);
            self.mark_dirty(shard_index);
            return;
        }
        if self.shards[shard_index as usize].listener.is_none()
            && !self.listen_port_closed
            && !self.rst_pending(id)
        {
            self.listen(id);
            // A shard is in `listening` exactly when it has a listener, so it is not there yet.
            self.listening.push_back(shard_index);
        } else {
            self.conns[id as usize].role = Role::Free;
            self.shards[shard_index as usize].free.push(id);
            if self.rst_pending(id) {
                // The shard's egress sends the RST, then one of its free sockets listens if
                // none does (`restore_listener`).
                self.mark_dirty(shard_index);
            }
        }
    }
}
