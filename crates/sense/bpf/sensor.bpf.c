// SPDX-License-Identifier: GPL-2.0
//
// Palisade's eBPF sensor: TCP connections (connect, accept, failed connect,
// close with byte counts), process executions, raw and packet sockets, and
// kernel packet drops with their reason. Only hooks that load where kprobes
// and fentry do not: BTF tracepoints and cgroup hooks.
//
// Events go to one ring buffer without a wake-up per event (user space
// polls it), and every event that finds the buffer full is counted in
// `lost`. The layouts below are read by `src/ebpf/event.rs`; keep the two
// in step (the size checks there catch a mismatch).
//
// TCP costs the connection rate of every pod on the node, so its path
// keeps no per-connection state here: each record carries its socket, and
// user space (`src/ebpf/join.rs`) joins a connect to the process that
// started it and a close to the connection it ends. A hash-map update or
// delete costs more than the ring-buffer record that replaces it.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

#define AF_INET 2
#define AF_INET6 10
#define AF_PACKET 17
#define SOCK_RAW 3
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_CLOSE 7
#define TCP_LISTEN 10

// Flags of TCP events: the connection existed when the sensor started
// (from the TCP iterator).
#define EXISTING 4

enum event_kind {
	EVENT_CONNECT = 1,
	EVENT_ACCEPT = 2,
	EVENT_CONNECT_FAILED = 3,
	EVENT_CLOSE = 4,
	EVENT_EXEC = 5,
	EVENT_SOCKET = 6,
	EVENT_DROP = 7,
	// A UDP flow this socket sends on, or receives from (aggregated).
	EVENT_UDP_SEND = 8,
	EVENT_UDP_RECEIVE = 9,
	// A socket began to connect (SYN_SENT, in the connecting process):
	// its owner, for user space to join to the connect or failed connect.
	EVENT_CONNECTING = 10,
};

// Who a socket belongs to: the process that created or listened on it.
struct owner {
	__u32 pid;
	__u32 pad;
	__u64 cgroup_id;
	char comm[16];
};

// The common head of every event.
struct head {
	__u8 kind;
	__u8 family;
	__u8 protocol;
	__u8 pad;
	__u32 netns;
	__u64 time_ns;
	struct owner owner;
};

struct tuple {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u32 pad;
};

// connecting, connect, accept, failed connect, close, drop, UDP
struct conn_event {
	struct head head;
	struct tuple tuple;
	__u64 bytes_sent;
	__u64 bytes_received;
	// drops: the kernel's skb_drop_reason; TCP events: EXISTING
	__u32 reason;
	// failed connects and closes: the socket's error (errno) as it closed,
	// which tcp_reset() and the ICMP handler set before the state change;
	// user space tells a reset from an ICMP answer or a timeout by it
	__u32 error;
	// TCP events: the socket's address, which joins its records
	__u64 sock;
};

struct exec_event {
	struct head head;
	char filename[256];
};

// A socket's family, type and protocol (raw and packet sockets only).
struct socket_event {
	struct head head;
	__u32 type;
	__u32 protocol;
};

// Never used: its value type puts the event layouts into the object's BTF,
// where a test compares them with the decoder's.
struct layouts {
	struct conn_event conn;
	struct exec_event exec;
	struct socket_event socket;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct layouts);
} layouts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 24);
} events SEC(".maps");

// Events lost because the ring buffer was full.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

// Listeners by network namespace and port, saved in listen()'s context:
// the passive side's ESTABLISHED runs in softirq, as whichever task the
// packet interrupted, so its owner comes from here, never from `current`.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct owner);
} listeners SEC(".maps");

// UDP flows already reported, by cgroup, direction, peer and local port:
// a flow is reported again only after UDP_REPEAT_NS, so a DNS storm is a
// handful of events, not a million.
struct udp_key {
	__u64 cgroup_id;
	__u8 peer[16];
	__u16 peer_port;
	__u16 local_port;
	__u8 family;
	__u8 kind;
	__u8 pad[2];
};

#define UDP_REPEAT_NS (10ULL * 1000 * 1000 * 1000)

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct udp_key);
	__type(value, __u64);
} udp_flows SEC(".maps");

static __always_inline void count_lost(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&lost, &zero);
	if (n)
		__sync_fetch_and_add(n, 1);
}

static __always_inline void *reserve(__u64 size)
{
	void *e = bpf_ringbuf_reserve(&events, size, 0);
	if (!e)
		count_lost();
	return e;
}

static __always_inline void submit(void *e)
{
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
}

static __always_inline void current_owner(struct owner *o)
{
	o->pid = bpf_get_current_pid_tgid() >> 32;
	o->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(o->comm, sizeof(o->comm));
}

static __always_inline __u32 sock_netns(const struct sock *sk)
{
	return sk->__sk_common.skc_net.net->ns.inum;
}

// The cgroup the socket was created in: right in any context.
static __always_inline __u64 sock_cgroup(const struct sock *sk)
{
	return sk->sk_cgrp_data.cgroup->kn->id;
}

static __always_inline __u64 listener_key(__u32 netns, __u16 port)
{
	return ((__u64)netns << 16) | port;
}

static __always_inline void read_tuple(const struct sock *sk, __u16 family, struct tuple *t)
{
	if (family == AF_INET) {
		__be32 saddr = sk->__sk_common.skc_rcv_saddr;
		__be32 daddr = sk->__sk_common.skc_daddr;
		__builtin_memcpy(t->saddr, &saddr, 4);
		__builtin_memcpy(t->daddr, &daddr, 4);
	} else {
		struct in6_addr saddr = sk->__sk_common.skc_v6_rcv_saddr;
		struct in6_addr daddr = sk->__sk_common.skc_v6_daddr;
		__builtin_memcpy(t->saddr, &saddr, 16);
		__builtin_memcpy(t->daddr, &daddr, 16);
	}
	t->sport = sk->__sk_common.skc_num;
	t->dport = bpf_ntohs(sk->__sk_common.skc_dport);
}

static __always_inline void emit_conn(__u8 kind, __u8 family, __u32 netns,
				      const struct sock *sk, const struct tuple *t,
				      const struct owner *o)
{
	struct conn_event *e = reserve(sizeof(*e));
	if (!e)
		return;
	__builtin_memset(e, 0, sizeof(*e));
	e->head.kind = kind;
	e->head.family = family;
	e->head.protocol = 6;
	e->head.netns = netns;
	e->head.time_ns = bpf_ktime_get_ns();
	e->head.owner = *o;
	e->tuple = *t;
	e->sock = (__u64)sk;
	if (kind == EVENT_CLOSE || kind == EVENT_CONNECT_FAILED)
		e->error = sk->sk_err;
	if (kind == EVENT_CLOSE) {
		const struct tcp_sock *tp = (const struct tcp_sock *)sk;
		// Read, not loaded: to the verifier the tracepoint's pointer is a
		// struct sock, and these fields lie beyond it.
		e->bytes_sent = BPF_CORE_READ(tp, bytes_acked);
		e->bytes_received = BPF_CORE_READ(tp, bytes_received);
	}
	submit(e);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_tcp_state, const struct sock *sk, const int oldstate, const int newstate)
{
	// The states that matter, before anything is read: the others
	// (FIN_WAIT, TIME_WAIT, CLOSE_WAIT...) are a third of all changes.
	if (newstate != TCP_SYN_SENT && newstate != TCP_ESTABLISHED &&
	    newstate != TCP_CLOSE && newstate != TCP_LISTEN)
		return 0;
	// Closing what is closed already reports nothing.
	if (newstate == TCP_CLOSE && oldstate == TCP_CLOSE)
		return 0;
	// Fields of the tracepoint's own socket are read directly (BTF
	// pointers), which costs no helper call.
	if (sk->sk_protocol != 6)
		return 0;
	__u16 family = sk->__sk_common.skc_family;
	if (family != AF_INET && family != AF_INET6)
		return 0;
	__u32 netns = sock_netns(sk);
	struct owner o = {};
	struct tuple t = {};

	if (newstate == TCP_LISTEN) {
		current_owner(&o);
		__u64 lkey = listener_key(netns, sk->__sk_common.skc_num);
		bpf_map_update_elem(&listeners, &lkey, &o, BPF_ANY);
		return 0;
	}
	if (newstate == TCP_CLOSE && oldstate == TCP_LISTEN) {
		__u64 lkey = listener_key(netns, sk->__sk_common.skc_num);
		bpf_map_delete_elem(&listeners, &lkey);
		return 0;
	}
	// SYN_SENT runs in the connecting process (the source port is still
	// 0); the rest may run in softirq, where only the socket is right.
	if (newstate == TCP_SYN_SENT)
		current_owner(&o);
	else
		o.cgroup_id = sock_cgroup(sk);
	read_tuple(sk, family, &t);
	// From SYN_RECV it is usually an accepted connection, but it may be a
	// simultaneous open of a socket that was connecting: user space, which
	// knows the connecting sockets, tells the two apart.
	if (newstate == TCP_SYN_SENT) {
		emit_conn(EVENT_CONNECTING, family, netns, sk, &t, &o);
	} else if (newstate == TCP_ESTABLISHED && oldstate == TCP_SYN_SENT) {
		emit_conn(EVENT_CONNECT, family, netns, sk, &t, &o);
	} else if (newstate == TCP_ESTABLISHED) {
		// The passive side: its process is the listener's.
		__u64 lkey = listener_key(netns, t.sport);
		struct owner *l = bpf_map_lookup_elem(&listeners, &lkey);
		if (l) {
			o.pid = l->pid;
			__builtin_memcpy(o.comm, l->comm, sizeof(o.comm));
		}
		emit_conn(EVENT_ACCEPT, family, netns, sk, &t, &o);
	} else if (oldstate == TCP_SYN_SENT) {
		// Never established: refused, unreachable, timed out or given up.
		emit_conn(EVENT_CONNECT_FAILED, family, netns, sk, &t, &o);
	} else {
		emit_conn(EVENT_CLOSE, family, netns, sk, &t, &o);
	}
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	struct exec_event *e = reserve(sizeof(*e));
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	e->head.kind = EVENT_EXEC;
	e->head.time_ns = bpf_ktime_get_ns();
	e->head.netns = BPF_CORE_READ(task, nsproxy, net_ns, ns.inum);
	current_owner(&e->head.owner);
	bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), BPF_CORE_READ(bprm, filename));
	submit(e);
	return 0;
}

// A raw or packet socket sees and forges traffic below the pod's policy.
// Always allows the socket (returns 1): the sensor watches, never blocks.
SEC("cgroup/sock_create")
int on_sock_create(struct bpf_sock *ctx)
{
	__u32 family = ctx->family, type = ctx->type;
	if (type != SOCK_RAW && family != AF_PACKET)
		return 1;
	struct socket_event *e = reserve(sizeof(*e));
	if (!e)
		return 1;
	__builtin_memset(e, 0, sizeof(*e));
	e->head.kind = EVENT_SOCKET;
	e->head.family = family;
	e->head.time_ns = bpf_ktime_get_ns();
	current_owner(&e->head.owner);
	struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
	e->head.netns = BPF_CORE_READ(task, nsproxy, net_ns, ns.inum);
	e->type = type;
	e->protocol = ctx->protocol;
	submit(e);
	return 1;
}

// A packet the kernel freed without delivering it. Attributed by the
// device's namespace and the packet's addresses, never by `current`
// (softirq runs as whichever task it interrupted).
SEC("tp_btf/kfree_skb")
int BPF_PROG(on_drop, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	if (reason == bpf_core_enum_value(enum skb_drop_reason, SKB_CONSUMED) ||
	    reason == bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_NOT_SPECIFIED))
		return 0;
	__u16 proto = bpf_ntohs(BPF_CORE_READ(skb, protocol));
	if (proto != ETH_P_IP && proto != ETH_P_IPV6)
		return 0;
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 network = BPF_CORE_READ(skb, network_header);
	__u16 transport = BPF_CORE_READ(skb, transport_header);
	struct tuple t = {};
	__u8 family, l4;
	if (proto == ETH_P_IP) {
		struct iphdr ip;
		if (bpf_probe_read_kernel(&ip, sizeof(ip), head + network))
			return 0;
		family = AF_INET;
		l4 = ip.protocol;
		__builtin_memcpy(t.saddr, &ip.saddr, 4);
		__builtin_memcpy(t.daddr, &ip.daddr, 4);
		// Before the transport header is set, it follows the IP header.
		if (transport == (__u16)~0U || transport <= network)
			transport = network + ip.ihl * 4;
	} else {
		struct ipv6hdr ip6;
		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), head + network))
			return 0;
		family = AF_INET6;
		l4 = ip6.nexthdr;
		__builtin_memcpy(t.saddr, &ip6.saddr, 16);
		__builtin_memcpy(t.daddr, &ip6.daddr, 16);
		if (transport == (__u16)~0U || transport <= network)
			transport = network + sizeof(ip6);
	}
	if (l4 == 6 || l4 == 17 || l4 == 132) {
		__be16 ports[2];
		if (!bpf_probe_read_kernel(ports, sizeof(ports), head + transport)) {
			t.sport = bpf_ntohs(ports[0]);
			t.dport = bpf_ntohs(ports[1]);
		}
	}
	struct conn_event *e = reserve(sizeof(*e));
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	e->head.kind = EVENT_DROP;
	e->head.family = family;
	e->head.protocol = l4;
	e->head.time_ns = bpf_ktime_get_ns();
	e->head.netns = BPF_CORE_READ(skb, dev, nd_net.net, ns.inum);
	e->tuple = t;
	e->reason = reason;
	submit(e);
	return 0;
}

// A datagram sent to, or received from, the address in `ctx`: reported
// once per flow and UDP_REPEAT_NS. Always allows it (returns 1).
static __always_inline int udp_flow(struct bpf_sock_addr *ctx, __u8 kind, int v6)
{
	if (ctx->protocol != 17)
		return 1;
	struct udp_key key = {};
	key.cgroup_id = bpf_get_current_cgroup_id();
	key.kind = kind;
	key.family = v6 ? AF_INET6 : AF_INET;
	key.peer_port = bpf_ntohs(ctx->user_port);
	struct bpf_sock *sk = ctx->sk;
	key.local_port = sk ? sk->src_port : 0;
	if (v6) {
		__u32 peer[4];
		peer[0] = ctx->user_ip6[0];
		peer[1] = ctx->user_ip6[1];
		peer[2] = ctx->user_ip6[2];
		peer[3] = ctx->user_ip6[3];
		__builtin_memcpy(key.peer, peer, 16);
	} else {
		__u32 peer = ctx->user_ip4;
		__builtin_memcpy(key.peer, &peer, 4);
	}
	__u64 now = bpf_ktime_get_ns();
	__u64 *last = bpf_map_lookup_elem(&udp_flows, &key);
	if (last && now - *last < UDP_REPEAT_NS)
		return 1;
	bpf_map_update_elem(&udp_flows, &key, &now, BPF_ANY);

	struct conn_event *e = reserve(sizeof(*e));
	if (!e)
		return 1;
	__builtin_memset(e, 0, sizeof(*e));
	e->head.kind = kind;
	e->head.family = key.family;
	e->head.protocol = 17;
	e->head.time_ns = now;
	current_owner(&e->head.owner);
	struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
	e->head.netns = BPF_CORE_READ(task, nsproxy, net_ns, ns.inum);
	// Local address: what the socket is bound to (0 when any address).
	if (sk) {
		if (v6) {
			__u32 local[4];
			local[0] = sk->src_ip6[0];
			local[1] = sk->src_ip6[1];
			local[2] = sk->src_ip6[2];
			local[3] = sk->src_ip6[3];
			__builtin_memcpy(e->tuple.saddr, local, 16);
		} else {
			__u32 local = sk->src_ip4;
			__builtin_memcpy(e->tuple.saddr, &local, 4);
		}
	}
	__builtin_memcpy(e->tuple.daddr, key.peer, 16);
	e->tuple.sport = key.local_port;
	e->tuple.dport = key.peer_port;
	submit(e);
	return 1;
}

SEC("cgroup/sendmsg4")
int on_udp_sendmsg4(struct bpf_sock_addr *ctx)
{
	return udp_flow(ctx, EVENT_UDP_SEND, 0);
}

SEC("cgroup/sendmsg6")
int on_udp_sendmsg6(struct bpf_sock_addr *ctx)
{
	return udp_flow(ctx, EVENT_UDP_SEND, 1);
}

// Connected UDP sockets send without sendmsg's hook: connect() is theirs.
SEC("cgroup/connect4")
int on_udp_connect4(struct bpf_sock_addr *ctx)
{
	return udp_flow(ctx, EVENT_UDP_SEND, 0);
}

SEC("cgroup/connect6")
int on_udp_connect6(struct bpf_sock_addr *ctx)
{
	return udp_flow(ctx, EVENT_UDP_SEND, 1);
}

// The receiving side (unconnected sockets): the datagram got through.
SEC("cgroup/recvmsg4")
int on_udp_recvmsg4(struct bpf_sock_addr *ctx)
{
	return udp_flow(ctx, EVENT_UDP_RECEIVE, 0);
}

SEC("cgroup/recvmsg6")
int on_udp_recvmsg6(struct bpf_sock_addr *ctx)
{
	return udp_flow(ctx, EVENT_UDP_RECEIVE, 1);
}

// The TCP sockets that exist when the sensor starts, so that a restart
// does not blind it: listeners go into `listeners` (owner: the socket's
// cgroup; the process is not known), established connections out as
// events, read by user space from the iterator (which joins their close
// to them). The kernel walks listeners before established sockets, so an
// accepted connection finds its listener.
SEC("iter/tcp")
int dump_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	if (!skc)
		return 0;
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(skc);
	if (!tp)
		return 0;
	const struct sock *sk = (const struct sock *)tp;
	__u16 family = sk->__sk_common.skc_family;
	if (family != AF_INET && family != AF_INET6)
		return 0;
	__u8 state = sk->__sk_common.skc_state;
	__u32 netns = sock_netns(sk);
	if (state == TCP_LISTEN) {
		struct owner o = {};
		o.cgroup_id = sock_cgroup(sk);
		__u64 lkey = listener_key(netns, sk->__sk_common.skc_num);
		bpf_map_update_elem(&listeners, &lkey, &o, BPF_NOEXIST);
		return 0;
	}
	if (state != TCP_ESTABLISHED)
		return 0;
	struct conn_event e = {};
	read_tuple(sk, family, &e.tuple);
	e.head.owner.cgroup_id = sock_cgroup(sk);
	__u64 lkey = listener_key(netns, e.tuple.sport);
	struct owner *listener = bpf_map_lookup_elem(&listeners, &lkey);
	if (listener) {
		e.head.owner.pid = listener->pid;
		__builtin_memcpy(e.head.owner.comm, listener->comm, sizeof(e.head.owner.comm));
	}
	e.head.kind = listener ? EVENT_ACCEPT : EVENT_CONNECT;
	e.head.family = family;
	e.head.protocol = 6;
	e.head.netns = netns;
	e.head.time_ns = bpf_ktime_get_ns();
	e.reason = EXISTING;
	e.sock = (__u64)sk;
	bpf_seq_write(ctx->meta->seq, &e, sizeof(e));
	return 0;
}
