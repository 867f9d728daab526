defmodule ExESDB.Cluster do
  @moduledoc """
  Cluster mode (`db_type: :cluster`): the store is one replica of a raft
  cluster (cowsql/raft 0.22.1 over TCP, `c_src/replica`) formed by the
  `seed_nodes`. Needs raft built into the NIF (`make raft`, then `make`);
  `ExESDB.Options` refuses `:cluster` with the reason otherwise.

  ## Forming the cluster (the bootstrap rule)

  The seed list is sorted; node `i` of it (1-based) is raft member `i`,
  reached at its `raft_addresses` entry or `"<host of its name>:<raft_port>"`.
  Each seed, started with the same `seed_nodes` (and addresses), writes
  that same configuration into its empty raft log (raft's documented
  bootstrap: every member given the same configuration), so the seeds
  form one cluster whatever order they start in and no start can form a
  second one; a seed started alone waits (no quorum) until enough others
  are up. A seed with no raft state writes that configuration only when
  `initial_cluster` lets it (`:auto`: every other seed's VM answered;
  `:new`: a majority of the seeds start with no raft state; `:existing`:
  never; `ExESDB.Options`, `ExESDB.Cluster.Seeding`). A restarted node rejoins from its raft log in
  `data_dir/store_id/raft` (the configuration is ignored once the log has
  state). Changing the seed list of a running cluster does not change its
  membership: use `add/3` (not built on the Elixir side yet) instead.

  Raft traffic is neither authenticated nor encrypted: keep `raft_bind` on
  loopback (the default) or a private network.

  ## Writes: the gateway

  A write on any node goes to the leader: on the leader it is submitted
  locally; elsewhere the command is sent over BEAM distribution to the
  leader node (`:erpc`), which submits it to its own replica. When there
  is no leader, it is unreachable, or leadership moves (`:not_leader`,
  `:outcome_unknown` from a leader that lost leadership), the same
  command, with the same event ids, is sent again to the leader known
  then, backing off 10 ms, doubling up to 200 ms, until the caller's
  `timeout` runs out. An append sent again is marked as a retry
  (`{:retry, expected}`): the store looks for its events among the
  stream's last 1,024 versions and answers the original's reply when they
  are there, so an append whose outcome was unknown (the leader lost
  leadership with it in flight) is written once. A checkpoint or snapshot
  put or delete goes with a request id, the same in every try; sent
  again it is marked too, and the store, which keeps the ids of the last
  1,024 requests it applied, answers `:ok` without applying it again when
  the first try was applied (docs/CLUSTER.md, "Puts and deletes").

  Every wait of the gateway ends by the caller's deadline (`timeout`
  after the call; `:infinity` waits for an answer): the call to the
  leader ends when the time is up (`{:error, :outcome_unknown}`: the
  leader may have taken the write), and the leader is given a little less
  (a quarter of what is left, at most 50 ms less) so that its own answer
  reaches the caller in time. Connecting to a leader node this node is
  not connected to is waited for within the deadline too (distribution's
  own wait, `net_setuptime`, is 7 s); a connection not made by then sent
  nothing: `{:error, {:not_leader, node}}`. The connect and the call of
  one try share that deadline: the call gets what the connect left.

  When the timeout runs out it answers the last error: `{:error,
  {:not_leader, node}}` (a leader is known but did not take the write),
  `{:error, :no_quorum}` (no leader known: this node is on a minority side,
  or the cluster is electing), or `{:error, :outcome_unknown}` /
  `{:error, :timeout}` as in single-node mode. Once a try's outcome was
  unknown (`:outcome_unknown`, or the call to the leader failed after it
  may have been sent: `{:unreachable, _}`), the answer is `{:error,
  :outcome_unknown}` rather than any of those "not written" errors, and a
  retried `delete_stream` / checkpoint or snapshot delete answering "already
  gone" (`:stream_deleted`, `:stream_not_found`, `:subscription_not_found`,
  `:snapshot_not_found`) answers `{:error, :outcome_unknown}` too: gone
  before, or deleted by the first try, the replies cannot tell. Answers a
  retry proves (a marked append's original reply) stand.

  A try carries its caller's deadline in wall-clock time; the leader
  refuses one that arrives within the reply margin of it (`{:error,
  :timeout}`, never applied). The nodes' clocks are assumed within that
  margin (50 ms) of each other (NTP); docs/CLUSTER.md ("Clocks") says
  what a larger skew does. A leader on an older release that lacks the
  call the gateway forwards with (a rolling upgrade) answers `{:error,
  {:unreachable, {:incompatible_release, node}}}`: nothing was written.

  ## Read-your-writes

  An acknowledged write is on a quorum's disks and applied on the leader.
  Before answering, the caller's node waits (within what is left of the
  timeout) until its own replica has applied the leader's applied index
  as of the reply, so a read on the caller's node right after sees the
  write. This is best effort: a committed write is answered with its
  result even when the timeout ran out before the caller's replica caught
  up (a read right after may then not see it yet). Reads are local by
  default: another node's reader may not see it yet, unless its read
  passes `consistency: :linearizable` (`ExESDB.ReadConsistency`) or it
  calls `barrier/2` first.
  A follower learns that an entry is committed from the leader's next
  message, so a write made on a follower is answered up to a `heartbeat`
  later than on the leader (measured: about 30 ms per one-event append
  with a 20 ms heartbeat, about 100 ms with 50 ms, on loopback).
  """

  @typedoc "A cluster store's configuration, derived from its options."
  import Bitwise

  @type config :: %{
          id: pos_integer(),
          nodes: %{pos_integer() => node()},
          nif: map()
        }

  @doc """
  The replica configuration of this node from resolved options (the
  bootstrap rule above).

      iex> o = %{seed_nodes: [:"b@h", :"a@h"], raft_port: 7420, raft_bind: "127.0.0.1",
      ...>       raft_addresses: %{"b@h": "10.0.0.2:7000"}, election_timeout: 1000, heartbeat: 100}
      iex> c = ExESDB.Cluster.config(o, :"b@h")
      iex> {c.id, c.nodes, c.nif.members, c.nif.bind_address}
      {2, %{1 => :"a@h", 2 => :"b@h"}, [{1, "h:7420"}, {2, "10.0.0.2:7000"}], "127.0.0.1:7000"}
  """
  @spec config(map(), node()) :: config()
  def config(options, self \\ node()) do
    seeds = options.seed_nodes |> Enum.uniq() |> Enum.sort()
    numbered = Enum.with_index(seeds, 1)
    address = address(options, self)
    [_, port] = String.split(address, ":")

    # a seed bootstraps with every seed; a joiner waits to be added (its
    # id checked against the running members' by ExESDB.Cluster.Seeding)
    {id, members} =
      case List.keyfind(numbered, self, 0) do
        {^self, id} -> {id, for({n, i} <- numbered, do: {i, address(options, n)})}
        nil -> {fresh_id(MapSet.new(1..length(seeds)//1)), []}
      end

    %{
      id: id,
      nodes: Map.new(numbered, fn {n, i} -> {i, n} end),
      nif: %{
        id: id,
        address: address,
        bind_address: "#{options.raft_bind}:#{port}",
        members: members,
        election_timeout_ms: options.election_timeout,
        heartbeat_ms: options.heartbeat,
        snapshot_threshold: Map.get(options, :snapshot_threshold, 16_384),
        trailing_bytes: Map.get(options, :snapshot_trailing_bytes, 1 <<< 30)
      }
    }
  end

  @doc """
  A raft id for a node outside the seed list, or for a member coming back
  under a new id (`ExESDB.Cluster.Seeding`): drawn at random from
  `range` (63 bits, non-zero), none of `taken` (the seeds' 1..N, and the
  ids in the configuration and the member records of the running members
  asked). Never derived from the node's name: a name that joins again
  (removed, its disk wiped) must not come back under an id the
  configuration may still hold, and two names must not share one. The
  id is kept in `raft/node_id` across restarts; the others find a
  member's node from its record (`member_nodes/1`).
  """
  @spec fresh_id(Enumerable.t(), Range.t()) :: pos_integer()
  def fresh_id(taken, range \\ 1..((1 <<< 63) - 1)) do
    id = range.first - 1 + :rand.uniform(Range.size(range))
    if id in taken, do: fresh_id(taken, range), else: id
  end

  defp address(options, node) do
    case Map.fetch(options.raft_addresses, node) do
      {:ok, addr} ->
        addr

      :error ->
        [_, host] = String.split(Atom.to_string(node), "@", parts: 2)
        "#{host}:#{options.raft_port}"
    end
  end

  @doc """
  What this node's replica knows: `id`, `node`, `leader` (the leader's
  node, or nil while none is known), `leader?` (whether it leads in
  `term`), `term` (its raft term), `applied` (the last raft index its
  store applied), `failure` (nil, or why it stopped), `needs_copy`
  (raft's snapshot passed its store: it waits for a copy of a member's,
  `ExESDB.Cluster.Seeding`), `commit` and `last_index` (raft's commit
  index and last log index) and `loop_age_us` (how long ago raft's loop
  last ran: it runs at least every heartbeat).
  """
  @spec info(atom()) :: {:ok, map()} | {:error, term()}
  def info(store_id) do
    with {:ok, s} <- cluster_store(store_id) do
      ExESDB.Backend.Cluster.info(s.handle)
    end
  end

  @doc "The leader's node (nil while none is known)."
  @spec leader(atom()) :: {:ok, node() | nil} | {:error, term()}
  def leader(store_id) do
    with {:ok, i} <- info(store_id), do: {:ok, i.leader}
  end

  @doc """
  The members recorded in this node's replica, `%{id => node}`: every
  member records its node and id once it has a leader
  (`ExESDB.Cluster.Seeding`; a member that came back from a lost data
  directory under a new id records that one). A node name no atom of
  this VM names (a node it never knew) is left out: names read from the
  store do not make atoms.
  """
  @spec member_nodes(atom()) :: {:ok, %{pos_integer() => node()}} | {:error, term()}
  def member_nodes(store_id) do
    with {:ok, s} <- cluster_store(store_id),
         {:ok, m} <- ExESDB.Cluster.Seeding.recorded(s) do
      named =
        for {n, id} <- m, node <- List.wrap(ExESDB.Cluster.Seeding.node_named(n)), do: {id, node}

      {:ok, Map.new(named)}
    end
  end

  @doc """
  The members of the raft configuration this node knows, as `{id, node,
  role}` sorted by id: `role` `:voter`, `:standby` or `:spare`, `node` nil
  for a joiner not connected to this node.
  """
  @spec members(atom()) :: {:ok, [{pos_integer(), node() | nil, atom()}]} | {:error, term()}
  def members(store_id) do
    with {:ok, s} <- cluster_store(store_id),
         {:ok, ms} <- ExESDB.Backend.Cluster.replica_members(s.handle.ref) do
      {:ok,
       ms
       |> Enum.map(fn {id, _addr, role} ->
         {id, ExESDB.Backend.Cluster.node_of(s.handle, id), role}
       end)
       |> Enum.sort()}
    end
  end

  @doc """
  A barrier for linearizable reads (what a read's `consistency:
  :linearizable` does before reading): returns once this node's replica has
  applied everything the cluster committed before the call (a no-op
  command goes through the leader's log, then this node waits for its
  index). A read on this node after `:ok` sees every write acknowledged
  before `barrier/2` was called, on any node. Within `timeout` (default
  the store's); during an election it waits, then answers `{:error,
  :no_quorum}` or `{:error, {:not_leader, node}}`; `{:error, :timeout}`
  when the no-op went through but this node's replica did not reach its
  index within the timeout (a read then may miss writes). On the C node
  backend with `cnode_cluster` the same, through the C nodes: the no-op
  goes to the leader C node, then the store's own C node (where reads
  go) is waited for.
  """
  @spec barrier(atom(), timeout() | nil) :: :ok | {:error, term()}
  def barrier(store_id, timeout \\ nil) do
    with {:ok, s} <- ExESDB.Store.fetch(store_id) do
      s = if timeout, do: %{s | timeout: timeout}, else: s
      s.backend.barrier(s)
    end
  end

  @doc """
  Add `node` (running this store with `join: true`) to the cluster as a
  voter: raft sends it the log, then makes it a voter once it caught up.
  Runs on the leader (routed there); waits for both changes. Errors:
  `{:not_leader, node}`, `:no_quorum`, `:change_in_progress`,
  `:outcome_unknown` (the leader did not answer in time, or the call
  failed there), `{:unreachable, node}` (the node does not run the
  store, or the leader cannot be called), `{:not_leader, nil}` (a leader
  this node cannot name), `:io_error` (raft could not catch the node up,
  e.g. it was restarting from a copy of a member's store,
  `ExESDB.Cluster.Seeding`). Calling it again for a node already added
  goes on where the last call stopped (it is made a voter if it is not
  one yet).
  """
  @spec add(atom(), node()) :: :ok | {:error, term()}
  def add(store_id, node) do
    with {:ok, s} <- cluster_store(store_id),
         {:ok, %{id: id, address: address}} <- self_of(node, store_id) do
      ExESDB.Backend.Cluster.on_leader(s, :add, [id, address])
    end
  end

  @doc """
  Remove `node` from the cluster (its replica stops taking part; stop its
  store after). Runs on the leader. Errors as `add/2`'s.
  """
  @spec remove(atom(), node()) :: :ok | {:error, term()}
  def remove(store_id, node) do
    with {:ok, s} <- cluster_store(store_id) do
      case ExESDB.Backend.Cluster.id_of(s.handle, node) do
        # neither recorded, a seed, nor reachable to say its id
        nil -> {:error, {:unreachable, node}}
        id -> ExESDB.Backend.Cluster.on_leader(s, :remove, [id])
      end
    end
  end

  defp self_of(node, store_id) do
    case :erpc.call(node, __MODULE__, :info, [store_id], 10_000) do
      {:ok, _} = ok -> ok
      {:error, _} -> {:error, {:unreachable, node}}
    end
  catch
    _, _ -> {:error, {:unreachable, node}}
  end

  @doc """
  Hand leadership to `node` (nil: the voter that applied most among
  those that can serve, i.e. not failed and not waiting for a copy of a
  member's store; a voter whose node is down or does not answer within
  1 s is not picked; raft's own choice, the first voter holding the
  whole log, when none answers), for a planned stop. Runs on the leader (routed there). Errors:
  `{:cannot_lead, node}` at once, nothing changed, when `node`'s replica
  cannot serve as leader (it waits for a copy of a member's store, or it
  failed: `info/1` on it says which; raft would hand it leadership, which
  it would only hand on), `:timeout` (no
  node took it up within an election timeout; the target may still win
  the election it started: see `leader/1` once it settled), `:no_quorum`,
  `{:not_leader, nil}` (a leader this node cannot name), `{:unreachable,
  leader}`, `:outcome_unknown` (as `add/2`'s).
  """
  @spec transfer(atom(), node() | nil) :: :ok | {:error, term()}
  def transfer(store_id, node \\ nil) do
    with {:ok, s} <- cluster_store(store_id) do
      ExESDB.Backend.Cluster.transfer(s, node)
    end
  end

  defp cluster_store(store_id) do
    with {:ok, s} <- ExESDB.Store.fetch(store_id) do
      if s.backend == ExESDB.Backend.Cluster, do: {:ok, s}, else: {:error, :not_cluster}
    end
  end
end
