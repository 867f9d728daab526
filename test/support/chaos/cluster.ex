defmodule ExESDB.Chaos.Cluster do
  @moduledoc false
  # A cluster store on n :peer nodes (raft over loopback) for the chaos
  # tests, the workload run against it with their defaults, and the node
  # faults: kill -9 and restart on the same data directory and node name.
  #
  # Every peer has its own loopback address (127.X.Y.i; all of 127/8 is
  # local) and fixed ports: BEAM distribution (inet_dist_listen_min/max)
  # and raft. Run under build/esdb_bind_shim.so with ESDB_BIND_ADDR, its
  # outgoing connections (distribution and raft) come from its address,
  # so ExESDB.Chaos.Partition can cut the links between two peers with
  # packet filter rules on (source address, destination port) while the
  # test VM (clients, nemesis; connecting from 127.0.0.1) still reaches
  # every peer. Peers run with -connect_all false and
  # prevent_overlapping_partitions false: a peer that loses another must
  # not make global cut its own other connections (issue 14).

  import ExESDB.Test.ClusterHelpers
  import ExESDB.Chaos.Ports, only: [hold: 3, release: 2]

  alias ExESDB.Chaos.Workload
  alias ExESDB.Test.ClusterPeer

  @shim "build/esdb_bind_shim.so"

  @doc "Start n peers with `store` in cluster mode; call from a test's setup."
  def start(store, n, opts \\ []) do
    u = ExESDB.Test.Unique.id()
    unmount_leftovers()
    dir = Path.join(System.tmp_dir!(), "ex_esdb_chaos_#{u}")
    File.rm_rf!(dir)
    [_, host] = node() |> Atom.to_string() |> String.split("@")
    # n seeds, and one more node that joins and leaves (join/2, leave/2)
    names = for(i <- 1..n, do: :"ch#{u}_#{i}") ++ [:"ch#{u}_j"]
    all = for name <- names, do: :"#{name}@#{host}"
    seeds = Enum.take(all, n)
    joiner = List.last(all)
    ports = free_ports(2 * (n + 1))
    {raft_ports, dist_ports} = Enum.split(ports, n + 1)
    addrs = Map.new(Enum.zip(all, raft_ports), fn {s, p} -> {s, "127.0.0.1:#{p}"} end)
    h = :erlang.phash2(u, 25_000)
    ips = for i <- 1..(n + 1), do: "127.#{100 + rem(h, 100)}.#{div(h, 100) + 1}.#{i}"
    # data directories on a small filesystem of their own ({index, MiB}):
    # a full disk is ENOSPC there, not everywhere
    mounts = for {i, mb} <- Keyword.get(opts, :tmpfs, []), do: mount(Path.join(dir, "n#{i}"), mb)

    ExUnit.Callbacks.on_exit(fn ->
      Enum.each(mounts, &unmount/1)
      File.rm_rf(dir)
    end)

    specs =
      for {{node, name}, i} <- Enum.with_index(Enum.zip(all, names), 1), into: %{} do
        store_opts = [
          store_id: store,
          data_dir: Path.join(dir, if(node == joiner, do: "j", else: "n#{i}")),
          db_type: :cluster,
          seed_nodes: seeds,
          raft_addresses: if(node == joiner, do: addrs, else: Map.delete(addrs, joiner)),
          join: node == joiner,
          election_timeout: Keyword.get(opts, :election_timeout, 500),
          heartbeat: 50,
          timeout: Keyword.get(opts, :timeout, 10_000),
          durability: :nosync
        ]

        {node,
         %{
           name: name,
           ip: Enum.at(ips, i - 1),
           dist_port: Enum.at(dist_ports, i - 1),
           raft_port: Enum.at(raft_ports, i - 1),
           store_opts: store_opts
         }}
      end

    # every node's distribution and raft ports are held (by the Agent)
    # until it starts: picked free now but used later, another process
    # had taken one (the spare's, and once a seed's in a clean-clone CI
    # run), and a peer whose distribution port is taken never boots
    # (:peer.start exits :timeout)
    {:ok, state} =
      Agent.start(fn ->
        held = Enum.reduce(specs, %{}, fn {node, spec}, acc -> hold(acc, node, spec) end)
        %{peers: %{}, os_pids: %{}, held: held}
      end)

    ExUnit.Callbacks.on_exit(fn -> stop_all(state) end)
    ctx = %{store: store, nodes: seeds, joiner: joiner, specs: specs, state: state, dir: dir}

    Enum.each(seeds, &start_peer(ctx, &1))
    for node <- seeds, do: :ok = :erpc.call(node, ClusterPeer, :start, [specs[node].store_opts])

    Map.merge(ctx, %{
      peers: Agent.get(state, & &1.peers),
      leader: agreed_leader(store, seeds),
      election_timeout: Keyword.get(opts, :election_timeout, 500)
    })
  end

  @doc "Whether small filesystems can be mounted here (root, tmpfs)."
  def mounts? do
    probe = Path.join(System.tmp_dir!(), "ex_esdb_chaos_probe_#{System.pid()}")
    File.mkdir_p!(probe)

    try do
      match?(
        {_, 0},
        System.cmd("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", probe], stderr_to_stdout: true)
      ) and
        match?({_, 0}, System.cmd("umount", [probe], stderr_to_stdout: true))
    after
      File.rm_rf(probe)
    end
  end

  @doc "Mount a tmpfs of `mb` MiB at `path` (made first); answers path."
  def mount(path, mb) do
    File.mkdir_p!(path)

    {out, rc} =
      System.cmd("mount", ["-t", "tmpfs", "-o", "size=#{mb}m", "tmpfs", path],
        stderr_to_stdout: true
      )

    if rc != 0, do: raise("mount #{path}: #{out}")
    path
  end

  @doc false
  def unmount(path), do: System.cmd("umount", ["-l", path], stderr_to_stdout: true)

  @doc """
  Mounts left by a test VM that is gone (killed before its cleanup),
  under <tmp>/<prefix><os pid>_...
  """
  def unmount_leftovers(prefix \\ "ex_esdb_chaos_") do
    prefix = Path.join(System.tmp_dir!(), prefix)

    for line <- String.split(File.read!("/proc/mounts"), "\n"),
        [_, path | _] <- [String.split(line, " ")],
        String.starts_with?(path, prefix),
        [pid | _] <- [String.split(String.replace_prefix(path, prefix, ""), "_")],
        not File.exists?("/proc/#{pid}") do
      unmount(path)
      File.rm_rf(Path.dirname(path))
    end
  end

  @doc "Fill the filesystem holding `path` (a file of all its free space)."
  def fill(path) do
    {_, _} =
      System.cmd("dd", ["if=/dev/zero", "of=#{Path.join(path, "filler")}", "bs=64k"],
        stderr_to_stdout: true
      )

    :ok
  end

  @doc "Whether peers run under the bind shim (partitions need it)."
  def shim?, do: File.exists?(@shim)

  defp start_peer(ctx, node) do
    spec = ctx.specs[node]

    args =
      [
        ~c"-kernel",
        ~c"prevent_overlapping_partitions",
        ~c"false",
        ~c"-connect_all",
        ~c"false",
        ~c"-kernel",
        ~c"inet_dist_listen_min",
        ~c"#{spec.dist_port}",
        ~c"-kernel",
        ~c"inet_dist_listen_max",
        ~c"#{spec.dist_port}"
      ] ++ Enum.flat_map(:code.get_path(), &[~c"-pa", &1])

    env =
      if shim?(),
        do: [
          {~c"LD_PRELOAD", String.to_charlist(Path.expand(@shim))},
          {~c"ESDB_BIND_ADDR", String.to_charlist(spec.ip)}
        ],
        else: []

    # a killed node's name leaves epmd when its socket closes
    wait_until(fn -> :erl_epmd.port_please(spec.name, ~c"localhost") == :noport end)
    Agent.update(ctx.state, &%{&1 | held: release(&1.held, node)})
    # a VM's boot may take over :peer's default 15 s on a loaded machine
    {:ok, peer, ^node} =
      ExESDB.Test.Peer.start(%{name: spec.name, args: args, env: env, wait_boot: 60_000})

    os_pid = :erpc.call(node, :os, :getpid, [])

    Agent.update(ctx.state, fn s ->
      %{s | peers: Map.put(s.peers, node, peer), os_pids: Map.put(s.os_pids, node, os_pid)}
    end)
  end

  # A paused peer cannot stop: resume them all first (a SIGCONT to a pid
  # reused since is harmless; never a kill by a stale pid).
  defp stop_all(state) do
    if Process.alive?(state) do
      %{peers: peers, os_pids: pids} = Agent.get(state, & &1)
      for {_, pid} <- pids, do: System.cmd("kill", ["-CONT", "#{pid}"], stderr_to_stdout: true)

      for {_, peer} <- peers do
        try do
          :peer.stop(peer)
        catch
          _, _ -> :ok
        end
      end

      Agent.stop(state)
    end
  end

  # os_pid/2, kill/2, await_down/1, pause/2, resume/2 of a peer's VM by OS pid
  defdelegate os_pid(ctx, node), to: ExESDB.Chaos.Signals
  defdelegate kill(ctx, node), to: ExESDB.Chaos.Signals
  defdelegate await_down(node), to: ExESDB.Chaos.Signals
  defdelegate pause(ctx, node), to: ExESDB.Chaos.Signals
  defdelegate resume(ctx, node), to: ExESDB.Chaos.Signals

  @doc "Start a killed node again: the same name, data directory and options."
  def restart(ctx, node) do
    start_peer(ctx, node)
    :ok = :erpc.call(node, ClusterPeer, :start, [ctx.specs[node].store_opts])
  end

  @doc """
  Membership under load: start ctx.joiner on an empty data directory and
  add it as a voter (through `via`); answers once it is a voter every
  seed lists and has caught up.
  """
  def join(ctx, via) do
    node = ctx.joiner
    File.rm_rf!(Keyword.fetch!(ctx.specs[node].store_opts, :data_dir))
    start_peer(ctx, node)
    :ok = :erpc.call(node, ClusterPeer, :start, [ctx.specs[node].store_opts])
    # another change may still be settling (answers :change_in_progress)
    wait_until(
      fn -> :erpc.call(via, ExESDB.Cluster, :add, [ctx.store, node], 70_000) == :ok end,
      60_000
    )

    caught_up(ctx.store, ctx.nodes ++ [node], 60_000)
    :ok
  end

  @doc "Remove ctx.joiner from the cluster (through `via`) and stop its VM."
  def leave(ctx, via) do
    node = ctx.joiner

    wait_until(
      fn -> :erpc.call(via, ExESDB.Cluster, :remove, [ctx.store, node], 70_000) == :ok end,
      60_000
    )

    wait_until(
      fn -> Enum.all?(ctx.nodes, &(node not in members(ctx.store, &1))) end,
      30_000
    )

    peer =
      Agent.get_and_update(ctx.state, fn s ->
        {s.peers[node], %{s | peers: Map.delete(s.peers, node)}}
      end)

    :peer.stop(peer)
    # held again for its next join (if the port is free yet)
    Agent.update(ctx.state, &%{&1 | held: hold(&1.held, node, ctx.specs[node])})
    :ok
  end

  defp members(store, node) do
    case :erpc.call(node, ExESDB.Cluster, :members, [store], 5_000) do
      {:ok, ms} -> Enum.map(ms, &elem(&1, 1))
      _ -> [:unknown]
    end
  end

  @doc "A backup of the node's store (ExESDB.System.backup/2) into `dest`."
  def backup(ctx, node, dest) do
    :ok = :erpc.call(node, ExESDB.System, :backup, [ctx.store, dest], 120_000)
  end

  @doc """
  Put a backup in place of a (stopped) node's store directory: the store
  as it was, without its raft state.
  """
  def restore(ctx, node, backup) do
    store_dir = Path.join(Keyword.fetch!(ctx.specs[node].store_opts, :data_dir), "#{ctx.store}")
    File.rm_rf!(store_dir)
    File.cp_r!(backup, store_dir)
    :ok
  end

  def info(store, node), do: elem(:erpc.call(node, ExESDB.Cluster, :info, [store]), 1)

  @doc "The node's replica info, or nil when it cannot answer within `ms`."
  def try_info(store, node, ms \\ 1000) do
    case :erpc.call(node, ExESDB.Cluster, :info, [store], ms) do
      {:ok, i} -> i
      _ -> nil
    end
  catch
    _, _ -> nil
  end

  @doc "The leader every given node agrees on (bounded wait)."
  def agreed_leader(store, nodes, ms \\ 10_000) do
    wait_until(
      fn ->
        leaders = Enum.map(nodes, &(try_info(store, &1) || %{leader: nil}).leader)
        l = hd(leaders)
        l in nodes and Enum.all?(leaders, &(&1 == l)) and l
      end,
      ms
    )
  end

  @doc "Wait until every node has applied at least what the leader had applied."
  def caught_up(store, nodes, ms \\ 30_000) do
    leader = agreed_leader(store, nodes, ms)
    target = info(store, leader).applied

    wait_until(
      fn -> Enum.all?(nodes, &((try_info(store, &1) || %{applied: 0}).applied >= target)) end,
      ms
    )
  end

  @doc """
  The workload on the cluster: 6 clients × 40 operations, local reads
  and, half of them, barrier (linearizable) reads; a persistent
  subscription to $all and one shared by 2 subscribers partitioned by
  stream, subscribed again by the subscribers when they go down.
  """
  def run(ctx, opts) do
    [
      store: ctx.store,
      nodes: ctx.nodes,
      clients: 6,
      ops: 40,
      subscribers: 1,
      shared_subscribers: 2,
      resubscribe: true,
      barrier_reads: 50,
      consistency: :local,
      label: "cluster#{length(ctx.nodes)}"
    ]
    |> Keyword.merge(opts)
    |> Keyword.merge(Workload.env_opts())
    |> Workload.run()
  end
end
