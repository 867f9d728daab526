/* test_partitions.c: network partitions and pauses against replica
 * processes (issue 14). A per-link proxy (link_proxy.h) cuts raft links
 * between real processes on loopback. Every test collects the nodes'
 * own leadership reports (the leader callback, with the term) and checks
 * that no term had two leaders; after healing, every acknowledged append
 * is on every replica where it was acknowledged (cluster_check_and_free)
 * and no append a cut-off node was asked for is anywhere.
 * ESDB_PARTITION_CYCLES scales the fault loops. */
#include "harness.h"

#include "cluster.h"
#include "leader_log.h"
#include "link_proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ABSENT_MAX 256
/* numbers of the appends sent to cut-off nodes: no writer makes these */
#define ABSENT_BASE (0xFAull << 56)

typedef struct faults {
	cluster c;
	link_proxy proxy;
	leader_log log;
	uint64_t absent[ABSENT_MAX]; /* must be in no store */
	size_t n_absent;
} faults;

static unsigned cycles(unsigned dflt)
{
	const char *v = getenv("ESDB_PARTITION_CYCLES");
	return v && *v ? (unsigned)strtoul(v, NULL, 10) : dflt;
}

/* n nodes behind the proxy, every link passing; nodes not started. */
static void faults_init(faults *f, int n)
{
	memset(f, 0, sizeof(*f));
	cluster_init(&f->c, n);
	char front[CLUSTER_MAX][32], back[CLUSTER_MAX][32];
	uint64_t ids[CLUSTER_MAX];
	for (int i = 0; i < n; i++) {
		node *nd = &f->c.nodes[i];
		/* the node listens where cluster_init put it; the others
		 * reach it through its proxy port */
		snprintf(nd->bind_address, sizeof(nd->bind_address), "%s",
		         nd->address);
		bool unique;
		do {
			snprintf(nd->address, sizeof(nd->address),
			         "127.0.0.1:%u", loopback_free_port());
			unique = true;
			for (int k = 0; k < n; k++)
				if (!strcmp(nd->address,
				            f->c.nodes[k].bind_address) ||
				    (k < i && !strcmp(nd->address,
				                      f->c.nodes[k].address)))
					unique = false;
		} while (!unique);
		memcpy(front[i], nd->address, 32);
		memcpy(back[i], nd->bind_address, 32);
		ids[i] = nd->id;
	}
	link_proxy_start(&f->proxy, n, ids, front, back);
	leader_log_start(&f->log, &f->c);
}

static void start_all(faults *f)
{
	for (int i = 0; i < f->c.n; i++)
		node_start(&f->c, i);
}

static int cmp_report(const void *a, const void *b)
{
	const leader_report *x = a, *y = b;
	return x->term < y->term ? -1 : x->term > y->term;
}

/* Never two leaders in one term, from every node's own reports; every
 * self-report names the reporter; no leader in term 0. Sorts reports by
 * term; describes the first violation in msg and returns 1, else 0.
 * *leaders: the reports naming a leader. */
static int leadership_violation(leader_report *reps, size_t n, char *msg,
                                size_t len, size_t *leaders)
{
	*leaders = 0;
	if (n)
		qsort(reps, n, sizeof(leader_report), cmp_report);
	for (size_t k = 0; k < n; k++) {
		leader_report *r = &reps[k];
		if (!r->leader)
			continue;
		++*leaders;
		if ((r->self && r->leader != r->node) || r->term == 0) {
			snprintf(msg, len,
			         "node %" PRIu64 " reported leader %" PRIu64
			         " (self %" PRIu64 ") in term %" PRIu64,
			         r->node, r->leader, r->self, r->term);
			return 1;
		}
		for (size_t j = k + 1; j < n && reps[j].term == r->term; j++)
			if (reps[j].leader && reps[j].leader != r->leader) {
				snprintf(msg, len,
				         "term %" PRIu64 ": node %" PRIu64
				         " saw leader %" PRIu64
				         ", node %" PRIu64
				         " saw leader %" PRIu64,
				         r->term, r->node, r->leader,
				         reps[j].node, reps[j].leader);
				return 1;
			}
	}
	return 0;
}

static size_t check_leadership(faults *f)
{
	char msg[200];
	size_t leaders;
	if (leadership_violation(f->log.reports, f->log.n, msg, sizeof(msg),
	                         &leaders))
		harness_fail(__FILE__, __LINE__, "%s", msg);
	return leaders;
}

/* The appends the cut-off nodes were asked for are in no store. */
static void check_absent(faults *f)
{
	for (int i = 0; i < f->c.n; i++) {
		collected all = {0};
		esdb_store *s;
		REQUIRE_OK(esdb_store_create(&s));
		REQUIRE_OK(esdb_store_set_readonly(s, true));
		REQUIRE_OK(esdb_store_open(s, f->c.nodes[i].dir));
		REQUIRE_OK(read_all_pages(s, 1, collect_event, &all));
		esdb_store_close(s);
		for (size_t k = 0; k < all.n; k++) {
			uint8_t want[16];
			for (size_t a = 0; a < f->n_absent; a++) {
				make_id(want, f->absent[a]);
				if (!memcmp(all.ids[k], want, 16))
					harness_fail(
					    __FILE__, __LINE__,
					    "node %d holds %#" PRIx64
					    " (position %" PRIu64
					    "), refused by a cut-off node",
					    i + 1, f->absent[a],
					    all.positions[k]);
			}
		}
		collected_free(&all);
	}
}

/* Stop everything, then check the stores, the refused appends and the
 * leadership reports (every one made before the stop in term `only_term`
 * unless 0). */
static void faults_finish(faults *f, const char *what, uint64_t only_term)
{
	size_t acks = cluster_acks(&f->c);
	/* Stopped one by one, the nodes left elect a leader of their own
	 * once the leader's connection closes (replica.c elects early
	 * then): `only_term` holds for the reports made before the stop. */
	size_t before_stop = leader_log_count(&f->log);
	cluster_check_and_free(&f->c); /* stops every node */
	link_proxy_stop(&f->proxy);
	leader_log_stop(&f->log, &f->c);
	check_absent(f);
	size_t leaders = check_leadership(f);
	for (size_t k = 0; only_term && k < before_stop; k++)
		CHECK_EQ(f->log.reports[k].term, only_term);
	uint64_t last_term = f->log.n ? f->log.reports[f->log.n - 1].term : 0;
	printf("     %s: %zu acknowledged appends, %zu refused, %zu leader "
	       "reports, last term %" PRIu64 "\n",
	       what, acks, f->n_absent, leaders, last_term);
	leader_log_free(&f->log);
}

static void set_writers(faults *f, unsigned threads)
{
	for (int i = 0; i < f->c.n; i++)
		if (node_alive(&f->c, i))
			node_writers(&f->c, i, threads);
}

static size_t acks_by(cluster *c, unsigned mask)
{
	size_t n = 0;
	pthread_mutex_lock(&c->lock);
	for (size_t k = 0; k < c->n_acks; k++)
		if (mask & 1u << (c->acks[k].node - 1))
			n++;
	pthread_mutex_unlock(&c->lock);
	return n;
}

/* `more` acknowledgements by nodes of mask; false after timeout_ms. */
static bool wait_acks_by(cluster *c, unsigned mask, size_t more,
                         unsigned timeout_ms)
{
	size_t want = acks_by(c, mask) + more;
	uint64_t end = mono_ms() + timeout_ms;
	while (acks_by(c, mask) < want) {
		if (mono_ms() > end)
			return false;
		usleep(5000);
	}
	return true;
}

/* The node of mask leading with every node of mask agreeing; -1 after
 * timeout_ms. */
static int wait_leader_in(cluster *c, unsigned mask, unsigned timeout_ms)
{
	uint64_t end = mono_ms() + timeout_ms;
	do {
		int leader = -1;
		uint64_t seen[CLUSTER_MAX];
		for (int i = 0; i < c->n; i++) {
			node_info info;
			if (!(mask & 1u << i))
				continue;
			node_get_info(c, i, &info);
			seen[i] = info.leader_id;
			if (info.is_leader)
				leader = i;
		}
		bool agree = leader >= 0;
		for (int i = 0; agree && i < c->n; i++)
			if (mask & 1u << i && seen[i] != c->nodes[leader].id)
				agree = false;
		if (agree)
			return leader;
		usleep(10000);
	} while (mono_ms() < end);
	return -1;
}

/* No node of mask claims leadership; false after timeout_ms. */
static bool wait_stepped_down(cluster *c, unsigned mask, unsigned timeout_ms)
{
	uint64_t end = mono_ms() + timeout_ms;
	do {
		bool any = false;
		for (int i = 0; i < c->n; i++) {
			node_info info;
			if (!(mask & 1u << i))
				continue;
			node_get_info(c, i, &info);
			any |= info.is_leader != 0;
		}
		if (!any)
			return true;
		usleep(10000);
	} while (mono_ms() < end);
	return false;
}

static uint64_t term_of(cluster *c, int i)
{
	node_info info;
	node_get_info(c, i, &info);
	return info.term;
}

/* What each node and the proxy saw (a failed wait says why). */
static void describe_nodes(faults *f)
{
	for (int i = 0; i < f->c.n; i++) {
		node_info info;
		if (!node_alive(&f->c, i) || f->c.nodes[i].paused)
			continue;
		node_get_info(&f->c, i, &info);
		printf("     node %d: term %" PRIu64 ", leader %" PRIu64
		       ", is_leader %d, events %" PRIu64 ", failed %d\n",
		       i + 1, info.term, info.leader_id, info.is_leader,
		       info.events, info.failed);
	}
	uint64_t accepted, dropped;
	link_proxy_counts(&f->proxy, &accepted, &dropped);
	printf("     proxy: %" PRIu64 " connections, %" PRIu64
	       " bytes dropped\n",
	       accepted, dropped);
}

/* The leader every node agrees on (30 s at most); on a timeout, what
 * each node and the proxy saw. */
static int leader_of(faults *f)
{
	int leader = cluster_wait_leader(&f->c, 30000);
	if (leader < 0)
		describe_nodes(f);
	return leader;
}

/* wait_acks_by (60 s), describing the nodes when it times out. */
static bool acks_by_or_describe(faults *f, unsigned mask, size_t more)
{
	if (wait_acks_by(&f->c, mask, more, 60000))
		return true;
	describe_nodes(f);
	return false;
}

/* Ask cut-off node i for an append: it must not acknowledge it (a
 * follower answers not_leader; a leader cut off from its followers
 * holds it until it steps down, then answers outcome_unknown), and the
 * event must end up in no store (the cut came first). */
static void append_refused(faults *f, int i)
{
	REQUIRE(f->n_absent < ABSENT_MAX);
	uint64_t n = ABSENT_BASE | f->n_absent;
	f->absent[f->n_absent++] = n;
	node_info info;
	node_append(&f->c, i, "cut-off", n, &info);
	if (info.rc != ESDB_ENOT_LEADER && info.rc != ESDB_EOUTCOME_UNKNOWN)
		harness_fail(__FILE__, __LINE__,
		             "cut-off node %d answered an append with %d (%s)",
		             i + 1, info.rc, esdb_error_describe(info.rc));
}

/* Times the first acknowledgement by `mask` after t0 (while the test
 * waits on a cut-off node's append); recovered_ms 0 after 30 s. */
typedef struct watch {
	cluster *c;
	unsigned mask;
	size_t base;
	uint64_t t0, recovered_ms;
} watch;

static void *watch_main(void *arg)
{
	watch *w = arg;
	while (mono_ms() < w->t0 + 30000) {
		if (acks_by(w->c, w->mask) > w->base) {
			w->recovered_ms = mono_ms() - w->t0;
			if (!w->recovered_ms)
				w->recovered_ms = 1;
			break;
		}
		usleep(2000);
	}
	return NULL;
}

/* Cut every link between the nodes of `side` and the rest. */
static void cut(faults *f, unsigned side, int mode)
{
	for (int a = 0; a < f->c.n; a++)
		for (int b = 0; b < f->c.n; b++)
			if (side & 1u << a && !(side & 1u << b))
				link_proxy_set_both(&f->proxy, a, b, mode);
}

/* The first time after t0 a node of mask reported itself leader, in
 * ms after t0; 0 when none did within a second. */
static uint64_t elected_after(faults *f, unsigned mask, uint64_t t0)
{
	uint64_t end = mono_ms() + 1000, first = 0;
	do {
		pthread_mutex_lock(&f->log.lock);
		for (size_t k = 0; k < f->log.n; k++) {
			leader_report *r = &f->log.reports[k];
			if (r->self && r->at_ms >= t0 &&
			    mask & 1u << (r->node - 1) &&
			    (!first || r->at_ms - t0 < first))
				first = r->at_ms - t0 ? r->at_ms - t0 : 1;
		}
		pthread_mutex_unlock(&f->log.lock);
		if (first)
			return first;
		usleep(5000);
	} while (mono_ms() < end);
	return 0;
}

/* With writers on every node: cut `minority` off; the majority elects
 * a leader and acknowledges, the minority acknowledges nothing and steps
 * down; heal, and everyone agrees on one leader again. Returns the time
 * from the cut to the majority's first acknowledgement, in ms, and in
 * *elected_ms the time until a majority node reported itself leader. */
static uint64_t minority_round(faults *f, unsigned minority, int mode,
                               uint64_t *elected_ms)
{
	cluster *c = &f->c;
	unsigned majority = ((1u << c->n) - 1) & ~minority;
	watch w = {c, majority, acks_by(c, majority), 0, 0};
	pthread_t watcher;
	cut(f, minority, mode);
	w.t0 = mono_ms();
	REQUIRE(pthread_create(&watcher, NULL, watch_main, &w) == 0);
	for (int i = 0; i < c->n; i++)
		if (minority & 1u << i)
			append_refused(f, i);
	pthread_join(watcher, NULL);
	REQUIRE(w.recovered_ms > 0);
	uint64_t recovered = w.recovered_ms;
	REQUIRE(wait_leader_in(c, majority, 20000) >= 0);
	*elected_ms = elected_after(f, majority, w.t0);
	CHECK(wait_stepped_down(c, minority, 20000));
	/* what the minority acknowledged before the cut is counted by
	 * now: the majority has since elected a leader */
	size_t before = acks_by(c, minority);
	CHECK(wait_acks_by(c, majority, 100, 30000));
	CHECK_EQ(acks_by(c, minority), before);
	for (int i = 0; i < c->n; i++)
		if (minority & 1u << i)
			append_refused(f, i);
	link_proxy_heal(&f->proxy);
	REQUIRE(cluster_wait_leader(c, 30000) >= 0);
	return recovered;
}

TEST(the_leadership_check_flags_two_leaders_in_one_term)
{
	char msg[200];
	size_t leaders;
	leader_report ok[] = {
	    {3, 3, 3, 1, 0}, {1, 2, 1, 1, 0}, {2, 2, 1, 0, 0}, {2, 3, 0, 0, 0},
	    {1, 3, 3, 0, 0}, {2, 4, 0, 0, 0}, {2, 5, 2, 1, 0},
	};
	CHECK_EQ(leadership_violation(ok, 7, msg, sizeof(msg), &leaders), 0);
	CHECK_EQ(leaders, 5);
	CHECK_EQ(ok[0].term, 2); /* sorted */
	leader_report two[] = {
	    {1, 2, 1, 1, 0}, {2, 3, 2, 1, 0}, {3, 2, 3, 0, 0}};
	CHECK_EQ(leadership_violation(two, 3, msg, sizeof(msg), &leaders), 1);
	CHECK(strstr(msg, "term 2") != NULL);
	leader_report self[] = {{1, 2, 2, 1, 0}};
	CHECK_EQ(leadership_violation(self, 1, msg, sizeof(msg), &leaders), 1);
	leader_report zero[] = {{1, 0, 1, 1, 0}};
	CHECK_EQ(leadership_violation(zero, 1, msg, sizeof(msg), &leaders), 1);
}

TEST(the_link_proxy_drops_and_resets_raft_links)
{
	/* the fault layer itself: a cut node hears nothing (its term
	 * stays, it never learns of appends), a reset link is refused;
	 * healed, it catches up */
	faults f;
	faults_init(&f, 3);
	start_all(&f);
	int leader = leader_of(&f);
	REQUIRE(leader >= 0);
	int cut_off = (leader + 1) % 3;
	for (int mode = LINK_DROP; mode <= LINK_RESET; mode++) {
		uint64_t acc0, drop0, acc1, drop1;
		link_proxy_counts(&f.proxy, &acc0, &drop0);
		cut(&f, 1u << cut_off, mode);
		node_info info, cut_info;
		node_get_info(&f.c, cut_off, &cut_info);
		for (uint64_t n = 1; n <= 20; n++) {
			node_append(&f.c, leader, "s", mode * 100 + n, &info);
			CHECK_RC(info.rc, 0);
		}
		/* the leader's heartbeats reconnect and meet the cut */
		uint64_t end = mono_ms() + 10000;
		do {
			usleep(20000);
			link_proxy_counts(&f.proxy, &acc1, &drop1);
		} while (mono_ms() < end &&
		         (mode == LINK_DROP ? drop1 == drop0 : acc1 <= acc0));
		CHECK(mode == LINK_DROP ? drop1 > drop0 : acc1 > acc0);
		node_info now;
		node_get_info(&f.c, cut_off, &now);
		CHECK_EQ(now.events, cut_info.events);
		link_proxy_heal(&f.proxy);
		REQUIRE(cluster_wait_converged(&f.c, 20000));
	}
	faults_finish(&f, "proxy", 0);
}

/* (1) Isolate the leader, ESDB_PARTITION_CYCLES times (2), alternating
 * blackholed and reset links. */
TEST(an_isolated_leader_acknowledges_nothing_and_the_majority_goes_on)
{
	unsigned rounds = cycles(2);
	faults f;
	faults_init(&f, 3);
	start_all(&f);
	REQUIRE(leader_of(&f) >= 0);
	set_writers(&f, 4);
	uint64_t worst = 0;
	for (unsigned k = 0; k < rounds; k++) {
		int leader = leader_of(&f);
		REQUIRE(leader >= 0);
		CHECK(wait_acks_by(&f.c, 7, 50, 30000));
		uint64_t elected;
		uint64_t ms = minority_round(
		    &f, 1u << leader, k % 2 ? LINK_RESET : LINK_DROP, &elected);
		worst = ms > worst ? ms : worst;
		printf("%s%" PRIu64 "/%" PRIu64,
		       k ? " "
		         : "     leader elected/writes again after (ms): ",
		       elected, ms);
	}
	printf("\n");
	set_writers(&f, 0);
	REQUIRE(cluster_wait_converged(&f.c, 30000));
	printf("     %u isolations, writes again after at most %" PRIu64
	       " ms (election timeout %u ms)\n",
	       rounds, worst, f.c.election_ms);
	faults_finish(&f, "isolate the leader", 0);
}

/* (2) Five nodes split 2/3: the leader on the two side, then on the
 * three side. */
TEST(five_nodes_split_two_three_only_the_three_acknowledge)
{
	unsigned rounds = cycles(2);
	faults f;
	faults_init(&f, 5);
	start_all(&f);
	REQUIRE(leader_of(&f) >= 0);
	set_writers(&f, 2);
	for (unsigned k = 0; k < rounds; k++) {
		int leader = leader_of(&f);
		REQUIRE(leader >= 0);
		CHECK(wait_acks_by(&f.c, 31, 50, 30000));
		int other = (leader + 1) % 5;
		unsigned two = k % 2 ? 1u << other | 1u << (other + 1) % 5
		                     : 1u << leader | 1u << other;
		uint64_t elected;
		minority_round(&f, two, LINK_DROP, &elected);
	}
	set_writers(&f, 0);
	REQUIRE(cluster_wait_converged(&f.c, 30000));
	faults_finish(&f, "split 2/3", 0);
}

/* (3) A ring: each of 5 nodes reaches only its two neighbours, from
 * the start (any node can gather 3 votes: elections race) and while the
 * ring's leader is paused past the election timeout. */
TEST(a_ring_partition_makes_at_most_one_leader_per_term)
{
	unsigned rounds = cycles(2);
	faults f;
	faults_init(&f, 5);
	for (int i = 0; i < 5; i++)
		link_proxy_set_both(&f.proxy, i, (i + 2) % 5, LINK_DROP);
	start_all(&f);
	set_writers(&f, 2);
	/* a leader made under the ring acknowledges (with its neighbours).
	 * A few acknowledgements show it: a 2-core machine at load ~30
	 * commits some 3 appends a second here (one entry in flight, each
	 * hop waiting for a CPU), so 100 took longer than 30 s. */
	CHECK(acks_by_or_describe(&f, 31, 10));
	for (unsigned k = 0; k < rounds; k++) {
		int leader = -1;
		for (int i = 0; i < 5 && leader < 0; i++) {
			node_info info;
			node_get_info(&f.c, i, &info);
			if (info.is_leader)
				leader = i;
		}
		if (leader < 0)
			continue;
		node_pause(&f.c, leader, true);
		/* a fault lasting three election timeouts */
		usleep(3 * f.c.election_ms * 1000);
		node_pause(&f.c, leader, false);
		CHECK(acks_by_or_describe(&f, 31, 10));
	}
	link_proxy_heal(&f.proxy);
	set_writers(&f, 0);
	REQUIRE(cluster_wait_converged(&f.c, 30000));
	faults_finish(&f, "ring", 0);
}

/* (4) Pre-vote: a follower cut off for five election timeouts keeps its
 * term and does not depose the leader when it returns. */
TEST(a_returning_isolated_node_does_not_raise_the_term_or_depose_the_leader)
{
	faults f;
	faults_init(&f, 3);
	start_all(&f);
	int leader = leader_of(&f);
	REQUIRE(leader >= 0);
	uint64_t term = term_of(&f.c, leader);
	CHECK(term >= 1);
	for (int i = 0; i < 3; i++) /* the getter: every node's term */
		CHECK_EQ(term_of(&f.c, i), term);
	int alone = (leader + 1) % 3;
	cut(&f, 1u << alone, LINK_DROP);
	uint64_t end = mono_ms() + 5 * f.c.election_ms;
	node_info info;
	for (uint64_t n = 1; mono_ms() < end; n++) {
		node_append(&f.c, leader, "s", n, &info);
		CHECK_RC(info.rc, 0);
		usleep(20000);
	}
	node_get_info(&f.c, alone, &info);
	CHECK_EQ(info.term, term);
	CHECK_EQ(info.leader_id, 0);
	link_proxy_heal(&f.proxy);
	REQUIRE(wait_leader_in(&f.c, 7, 20000) == leader);
	REQUIRE(cluster_wait_converged(&f.c, 20000));
	for (int i = 0; i < 3; i++)
		CHECK_EQ(term_of(&f.c, i), term);
	faults_finish(&f, "pre-vote", term);
}

/* (4b) The leader's connection to one follower reset, ten times, the
 * leader alive and the link passing again at once: that follower stops
 * counting on its leader and asks for pre-votes early (replica.c,
 * leader_connection_closed), but the other follower still hears the
 * leader and refuses, and the leader's next heartbeat brings it back.
 * Nobody's term moves, the leader stays. */
TEST(a_reset_connection_from_a_live_leader_does_not_depose_it)
{
	faults f;
	faults_init(&f, 3);
	start_all(&f);
	int leader = leader_of(&f);
	REQUIRE(leader >= 0);
	uint64_t term = term_of(&f.c, leader);
	int follower = (leader + 1) % 3;
	node_info info;
	uint64_t n = 0;
	for (int k = 0; k < 10; k++) {
		link_proxy_set(&f.proxy, leader, follower, LINK_RESET);
		link_proxy_set(&f.proxy, leader, follower, LINK_PASS);
		/* past the follower's turn to ask (under T here) */
		uint64_t end = mono_ms() + f.c.election_ms;
		while (mono_ms() < end) {
			node_append(&f.c, leader, "s", ++n, &info);
			CHECK_RC(info.rc, 0);
			usleep(20000);
		}
	}
	REQUIRE(cluster_wait_converged(&f.c, 20000));
	for (int i = 0; i < 3; i++) {
		node_get_info(&f.c, i, &info);
		CHECK_EQ(info.term, term);
		CHECK_EQ(info.leader_id, f.c.nodes[leader].id);
	}
	faults_finish(&f, "reset", term);
}

/* (5) SIGSTOP the leader past the election timeout, then SIGCONT: a
 * new leader in a higher term, the old one steps down and follows. */
TEST(a_paused_leader_steps_down_when_it_resumes)
{
	unsigned rounds = cycles(2);
	faults f;
	faults_init(&f, 3);
	start_all(&f);
	REQUIRE(leader_of(&f) >= 0);
	set_writers(&f, 4);
	for (unsigned k = 0; k < rounds; k++) {
		int old = leader_of(&f);
		REQUIRE(old >= 0);
		uint64_t term = term_of(&f.c, old);
		CHECK(wait_acks_by(&f.c, 7, 50, 30000));
		node_pause(&f.c, old, true);
		int leader = leader_of(&f);
		REQUIRE(leader >= 0 && leader != old);
		uint64_t new_term = term_of(&f.c, leader);
		CHECK(new_term > term);
		CHECK(wait_acks_by(&f.c, 7 & ~(1u << old), 100, 30000));
		node_pause(&f.c, old, false);
		REQUIRE(wait_leader_in(&f.c, 7, 20000) == leader);
		CHECK_EQ(term_of(&f.c, old), new_term);
	}
	set_writers(&f, 0);
	REQUIRE(cluster_wait_converged(&f.c, 30000));
	faults_finish(&f, "pause the leader", 0);
}
