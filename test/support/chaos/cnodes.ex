defmodule ExESDB.Chaos.CNodes do
  @moduledoc false
  # The chaos workload against a cluster of C nodes (priv/ex_esdb_cnode
  # --raft-*, each owning a replica of one store) with BEAM client nodes:
  # one :peer per C node running the store on the C node backend
  # (ExESDB.Backend.CNode) homed on it, with `cnode_cluster` naming all
  # of them, so a write follows {:not_leader, node} to the leader.
  #
  # As in ExESDB.Chaos.Cluster, every process has its own loopback
  # address and fixed ports, and runs under build/esdb_bind_shim.so: the
  # C nodes' raft connections and the clients' distribution connections
  # to the C nodes come from their own address, so ExESDB.Chaos.Partition
  # can cut raft between C nodes and distribution between a client and a
  # C node (ctx.specs has the keys it reads). The test VM (127.0.0.1)
  # drives the clients, reads every C node's replica directly at the end
  # and polls their cluster_info; it is never cut off.
  #
  # The C nodes belong to one owner process (Ports; --stop-on-eof stops
  # them when it goes); kill -9 / SIGSTOP by OS pid; a killed C node
  # starts again with the same name, store directory, raft id and ports.

  import ExESDB.Test.ClusterHelpers, only: [free_ports: 1, wait_until: 2]
  import ExESDB.Chaos.Ports, only: [hold: 3, release: 2]

  alias ExESDB.Chaos.Workload
  alias ExESDB.Test.ClusterPeer

  @bin Path.expand("../../../priv/ex_esdb_cnode", __DIR__)
  @shim "build/esdb_bind_shim.so"
  @page 1000

  @doc """
  Start n C node replicas and n client peers; call from a test's setup.
  ctx: store, nodes (the clients), cnodes, home (client => C node),
  client_of (C node => client), specs, election_timeout, spare (a C
  node not started, for join/1 and leave/1), disk (the C node on the
  first :tmpfs, or nil). Options: :election_timeout
  (500 ms), :heartbeat (50 ms), :tmpfs ([{i, MiB}]: C node i's store on
  a small filesystem of its own, where a full disk is ENOSPC; root).
  """
  def start(store, n \\ 3, opts \\ []) do
    u = ExESDB.Test.Unique.id()
    ExESDB.Chaos.Cluster.unmount_leftovers("ex_esdb_chaoscn_")
    dir = Path.join(System.tmp_dir!(), "ex_esdb_chaoscn_#{u}")
    File.rm_rf!(dir)
    File.mkdir_p!(dir)
    [_, host] = node() |> Atom.to_string() |> String.split("@")
    et = Keyword.get(opts, :election_timeout, 500)
    cnodes = for i <- 1..n, do: :"chcn#{u}_#{i}@#{host}"
    clients = for i <- 1..n, do: :"chcl#{u}_#{i}@#{host}"
    # a C node's distribution and raft ports; a client's distribution
    # port, and one nothing listens on (Partition cuts two per node)
    [cn_dist, cn_raft, cl_dist, cl_none] = Enum.chunk_every(free_ports(4 * n), n)
    [sp_dist, sp_raft] = free_ports(2)
    h = :erlang.phash2(u, 25_000)
    ip = fn i -> "127.#{100 + rem(h, 100)}.#{div(h, 100) + 1}.#{i}" end
    spare = :"chcn#{u}_#{n + 1}@#{host}"

    specs =
      Map.new(Enum.with_index(cnodes), fn {cn, i} ->
        {cn,
         %{
           kind: :cnode,
           id: i + 1,
           ip: ip.(i + 1),
           dist_port: Enum.at(cn_dist, i),
           raft_port: Enum.at(cn_raft, i),
           store_dir: Path.join(dir, "c#{i + 1}")
         }}
      end)
      |> Map.merge(
        Map.new(Enum.with_index(clients), fn {cl, i} ->
          {cl,
           %{
             kind: :client,
             ip: ip.(n + i + 1),
             dist_port: Enum.at(cl_dist, i),
             raft_port: Enum.at(cl_none, i),
             store_opts: [
               store_id: store,
               data_dir: Path.join(dir, "cl#{i + 1}"),
               cnode: Enum.at(cnodes, i),
               cnode_cluster: cnodes,
               timeout: 10_000
             ]
           }}
        end)
      )
      |> Map.put(spare, %{
        kind: :spare,
        id: n + 1,
        ip: ip.(2 * n + 1),
        dist_port: sp_dist,
        raft_port: sp_raft,
        store_dir: Path.join(dir, "spare")
      })

    members =
      for cn <- cnodes,
          s = specs[cn],
          do: ["--raft-member", "#{s.id},127.0.0.1:#{s.raft_port},#{cn}"]

    mounts =
      for {i, mb} <- Keyword.get(opts, :tmpfs, []),
          do: ExESDB.Chaos.Cluster.mount(Path.join(dir, "c#{i}"), mb)

    owner = spawn(fn -> own(dir) end)

    {:ok, state} =
      Agent.start(fn ->
        held = Enum.reduce(specs, %{}, fn {node, spec}, acc -> hold(acc, node, spec) end)
        %{peers: %{}, os_pids: %{}, held: held, joins: 0, raft: %{}, replaced: 0}
      end)

    ExUnit.Callbacks.on_exit(fn -> stop_all(state, owner, dir, mounts) end)

    ctx = %{
      store: store,
      nodes: clients,
      cnodes: cnodes,
      spare: spare,
      home: Map.new(Enum.zip(clients, cnodes)),
      client_of: Map.new(Enum.zip(cnodes, clients)),
      specs: specs,
      members: List.flatten(members),
      owner: owner,
      state: state,
      dir: dir,
      election_timeout: et,
      heartbeat: Keyword.get(opts, :heartbeat, 50),
      # the C node whose store is on the first tmpfs (the disk_full fault's)
      disk:
        with(
          [{i, _} | _] <- Keyword.get(opts, :tmpfs, []),
          do: Enum.at(cnodes, i - 1),
          else: (_ -> nil)
        )
    }

    Enum.each(cnodes, &start_member(ctx, &1))
    leader = leader(ctx, cnodes, 20_000)
    Enum.each(clients, &start_client(ctx, &1))
    Map.put(ctx, :leader, leader)
  end

  # ---- C nodes ----------------------------------------------------------

  # as the member it is: its first id and the member list, or, once
  # replaced (replace/3), its new id and where it copies from
  defp start_member(ctx, cn) do
    raft = Agent.get(ctx.state, &get_in(&1, [:raft, cn, :args])) || first_args(ctx, cn)
    start_cnode(ctx, cn, raft)
  end

  defp first_args(ctx, cn), do: ["--raft-id", "#{ctx.specs[cn].id}"] ++ ctx.members

  @doc "A C node's raft id now (a new one after replace/3)."
  def raft_id(ctx, cn),
    do: Agent.get(ctx.state, &get_in(&1, [:raft, cn, :id])) || ctx.specs[cn].id

  # `raft`: its --raft-id and where it learns of the cluster
  defp start_cnode(ctx, cn, raft) do
    case open_cnode(ctx, cn, raft) do
      :ok -> :ok
      {:error, why} -> raise "C node #{cn} did not start: #{why}"
    end
  end

  # :ok once it said ready (connected, hello said), or {:error, why}
  # ("exited N": it refused to start, why in its log)
  defp open_cnode(ctx, cn, raft) do
    s = ctx.specs[cn]

    args =
      [
        "--name",
        "#{cn}",
        "--store",
        s.store_dir,
        "--cookie-stdin",
        "--stop-on-eof",
        "--durability",
        "nosync",
        "--port",
        "#{s.dist_port}",
        "--raft-address",
        "127.0.0.1:#{s.raft_port}",
        "--raft-election-timeout-ms",
        "#{ctx.election_timeout}",
        "--raft-heartbeat-ms",
        "#{ctx.heartbeat}"
      ] ++ raft

    [name, _] = cn |> Atom.to_string() |> String.split("@")
    # a killed C node's name leaves epmd when its socket closes
    wait_until(
      fn -> :erl_epmd.port_please(String.to_charlist(name), ~c"localhost") == :noport end,
      10_000
    )

    Agent.update(ctx.state, &%{&1 | held: release(&1.held, cn)})
    ref = make_ref()
    send(ctx.owner, {:open, self(), ref, cn, args, env(s.ip)})

    receive do
      {^ref, {:ok, os_pid}} ->
        Agent.update(ctx.state, &%{&1 | os_pids: Map.put(&1.os_pids, cn, os_pid)})
        true = Node.connect(cn)
        {:ok, 1} = hello(cn)
        :ok

      {^ref, {:error, why}} ->
        {:error, why}
    after
      30_000 -> raise "C node #{cn} did not start in 30 s"
    end
  end

  defp env(ip) do
    if File.exists?(@shim),
      do: [
        {~c"LD_PRELOAD", String.to_charlist(Path.expand(@shim))},
        {~c"ESDB_BIND_ADDR", ~c"#{ip}"}
      ],
      else: []
  end

  # The Ports' owner: opens a C node on request (answering once it said
  # ready), keeps each one's output in <dir>/<name>.log.
  defp own(dir) do
    receive do
      {:open, from, ref, cn, args, env} ->
        {port, os_pid} = ExESDB.Test.CNodeCluster.open(@bin, args, env)
        Process.put(port, Path.join(dir, "#{cn}.log"))

        case await_ready(port) do
          nil -> send(from, {ref, {:ok, os_pid}})
          why -> send(from, {ref, {:error, why}})
        end

        own(dir)

      {port, {:data, {_, line}}} ->
        log(port, line)
        own(dir)

      {port, {:exit_status, st}} ->
        log(port, "exit status #{st}")
        own(dir)

      _ ->
        own(dir)
    end
  end

  defp log(port, line) do
    if file = Process.get(port), do: File.write(file, [line, ?\n], [:append])
  end

  defp await_ready(port) do
    receive do
      {^port, {:data, {:eol, "ready " <> _ = line}}} ->
        log(port, line)
        nil

      {^port, {:data, {_, line}}} ->
        log(port, line)
        await_ready(port)

      {^port, {:exit_status, s}} ->
        log(port, "exit status #{s}")
        "exited #{s}"
    after
      20_000 -> "no ready line in 20 s"
    end
  end

  # A SIGSTOPped process cannot stop: resume them all first (a SIGCONT
  # to a pid reused since is harmless; never a kill by a stale pid
  # except these, which are the C nodes of this test).
  defp stop_all(state, owner, dir, mounts) do
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

      for {cn, pid} <- pids,
          String.starts_with?(Atom.to_string(cn), "chcn"),
          do: System.cmd("kill", ["-9", "#{pid}"], stderr_to_stdout: true)

      Agent.stop(state)
    end

    Process.exit(owner, :kill)
    Enum.each(mounts, &ExESDB.Chaos.Cluster.unmount/1)
    if System.get_env("ESDB_CHAOS_KEEP") in [nil, "", "0"], do: File.rm_rf(dir)
  end

  # os_pid/2, kill/2, await_down/1, pause/2, resume/2 by OS pid
  defdelegate os_pid(ctx, cn), to: ExESDB.Chaos.Signals
  defdelegate kill(ctx, cn), to: ExESDB.Chaos.Signals
  defdelegate await_down(cn), to: ExESDB.Chaos.Signals
  defdelegate pause(ctx, cn), to: ExESDB.Chaos.Signals
  defdelegate resume(ctx, cn), to: ExESDB.Chaos.Signals

  @doc "Start a killed C node again: the same name, store, raft id and ports."
  def restart(ctx, cn), do: start_member(ctx, cn)

  @doc "Back a C node's store up into `dest` (its backup request: a compacted copy)."
  def backup(cn, dest), do: :ok = call(cn, {:backup, dest}, 120_000)

  @doc """
  Bring a killed C node back from a backup (backup/2) as a new member:
  the backup in place of its store (no raft state in it); started as the
  voter it was, it must refuse (exit 3: the other members hold its
  record; a voter never comes back with an older log than it had);
  its raft id removed through the leader; started with a new id,
  copying from the others, added by name, made a voter, waited for until
  it applied what the leader had. Later restarts keep the new id.
  """
  def replace(ctx, cn, backup) do
    s = ctx.specs[cn]
    old = raft_id(ctx, cn)
    # its contents (the directory may be a tmpfs mount point)
    for f <- File.ls!(s.store_dir), do: File.rm_rf!(Path.join(s.store_dir, f))
    File.cp_r!(backup, s.store_dir)
    false = File.exists?(Path.join([s.store_dir, "raft", "node_id"]))

    case open_cnode(ctx, cn, ["--raft-id", "#{old}"] ++ current_members(ctx)) do
      {:error, "exited 3"} -> :ok
      other -> raise "#{cn} restored from a backup started as voter #{old}: #{inspect(other)}"
    end

    false = File.exists?(Path.join([s.store_dir, "raft", "node_id"]))
    Agent.update(ctx.state, &%{&1 | held: hold(&1.held, cn, s)})
    others = ctx.cnodes -- [cn]
    change(ctx, &(not match?({^old, _, _}, &1)), {:cluster_remove, old}, :all, others)
    wait_until(fn -> Enum.all?(others, &(members(&1) |> gone?(old))) end, 30_000)

    # ids above any the spare takes
    id = Agent.get_and_update(ctx.state, &{1000 + &1.replaced, %{&1 | replaced: &1.replaced + 1}})
    copy_from = Enum.flat_map(others, &["--raft-copy-from", "#{&1}"])
    args = ["--raft-id", "#{id}"] ++ copy_from
    Agent.update(ctx.state, &put_in(&1, [:raft, cn], %{id: id, args: args}))
    start_cnode(ctx, cn, args)
    address = "127.0.0.1:#{s.raft_port}"
    change(ctx, &match?({^id, _, _}, &1), {:cluster_add, id, address, cn}, :any, others)
    change(ctx, &match?({^id, _, :voter}, &1), {:cluster_assign, id, :voter}, :any, others)
    target = try_info(leader(ctx, others, 30_000)).applied
    wait_until(fn -> (try_info(cn) || %{applied: 0}).applied >= target end, 60_000)
    :ok
  end

  # --raft-member flags naming every C node by its id now
  defp current_members(ctx) do
    Enum.flat_map(ctx.cnodes, fn cn ->
      ["--raft-member", "#{raft_id(ctx, cn)},127.0.0.1:#{ctx.specs[cn].raft_port},#{cn}"]
    end)
  end

  @doc """
  Start ctx.spare on an empty store with a raft id no member had, add it
  through the leader (by name) and make it a voter; answers once it
  applied what the leader had. Each join is a new member.
  """
  def join(ctx) do
    sp = ctx.spare
    s = ctx.specs[sp]
    id = Agent.get_and_update(ctx.state, &{s.id + &1.joins, %{&1 | joins: &1.joins + 1}})
    File.rm_rf!(s.store_dir)
    copy_from = Enum.flat_map(ctx.cnodes, &["--raft-copy-from", "#{&1}"])
    start_cnode(ctx, sp, ["--raft-id", "#{id}"] ++ copy_from)
    address = "127.0.0.1:#{s.raft_port}"
    # until the leader's configuration has it, as a voter (a change that
    # timed out may have been made; another may be in progress)
    change(ctx, &match?({^id, _, _}, &1), {:cluster_add, id, address, sp})
    change(ctx, &match?({^id, _, :voter}, &1), {:cluster_assign, id, :voter})
    target = try_info(leader(ctx, ctx.cnodes, 30_000)).applied
    wait_until(fn -> (try_info(sp) || %{applied: 0}).applied >= target end, 60_000)
    :ok
  end

  @doc """
  Remove ctx.spare (as join/1 last added it) through the leader; once
  no C node's configuration has it, kill it, and hold its ports for the
  next join.
  """
  def leave(ctx) do
    sp = ctx.spare
    id = Agent.get(ctx.state, &(ctx.specs[sp].id + &1.joins - 1))
    change(ctx, &(not match?({^id, _, _}, &1)), {:cluster_remove, id}, :all)
    wait_until(fn -> Enum.all?(ctx.cnodes, &(members(&1) |> gone?(id))) end, 30_000)
    kill(ctx, sp)
    await_down(sp)

    Agent.update(
      ctx.state,
      &%{&1 | held: hold(&1.held, sp, ctx.specs[sp]), os_pids: Map.delete(&1.os_pids, sp)}
    )

    :ok
  end

  defp gone?(nil, _id), do: false
  defp gone?(ms, id), do: not Enum.any?(ms, &match?({^id, _, _}, &1))

  defp members(cn) do
    case call(cn, {:cluster_members}, 2_000) do
      {:ok, ms} -> ms
      _ -> nil
    end
  end

  # Send `request` to the leader until its configuration's members
  # satisfy `done?` (:any member, or :all of them for a removal).
  # (`cns`: the C nodes asked who leads, by default all)
  defp change(ctx, done?, request, quant \\ :any, cns \\ nil) do
    wait_until(
      fn ->
        l = leader(ctx, cns || ctx.cnodes, 30_000)
        ms = members(l)

        cond do
          ms == nil -> false
          quant == :any and Enum.any?(ms, done?) -> true
          quant == :all and Enum.all?(ms, done?) -> true
          true -> call(l, request, 30_000) == :ok
        end
      end,
      60_000
    )
  end

  @doc """
  A request to a C node from this process: its reply, or :no_reply
  after `ms`. A connection made since the C node restarted says hello
  first.
  """
  def call(cn, request, ms \\ 5_000) do
    case raw_call(cn, request, ms) do
      {:error, :hello_required} ->
        with {:ok, 1} <- hello(cn), do: raw_call(cn, request, ms)

      reply ->
        reply
    end
  end

  defp hello(cn), do: raw_call(cn, {:hello, 1}, 5_000)

  defp raw_call(cn, request, ms), do: ExESDB.Test.CNodeCluster.call(cn, request, ms)

  @doc "A C node's cluster_info, or nil when it cannot answer within `ms`."
  def try_info(cn, ms \\ 1000) do
    case call(cn, {:cluster_info}, ms) do
      {:ok, i} -> i
      _ -> nil
    end
  end

  @doc "The C node every one of `cns` names as leader, once they agree (bounded)."
  def leader(_ctx, cns, ms \\ 10_000) do
    wait_until(
      fn ->
        leaders = Enum.map(cns, &(try_info(&1) || %{leader_node: nil}).leader_node)
        l = hd(leaders)
        l in cns and Enum.all?(leaders, &(&1 == l)) and l
      end,
      ms
    )
  end

  @doc "Wait until every C node has applied at least what the leader had applied."
  def caught_up(ctx, ms \\ 30_000) do
    l = leader(ctx, ctx.cnodes, ms)
    target = try_info(l).applied

    wait_until(
      fn -> Enum.all?(ctx.cnodes, &((try_info(&1) || %{applied: 0}).applied >= target)) end,
      ms
    )
  end

  # ---- clients ------------------------------------------------------------

  defp start_client(ctx, node) do
    s = ctx.specs[node]
    [name, _] = node |> Atom.to_string() |> String.split("@")

    args =
      [
        ~c"-kernel",
        ~c"prevent_overlapping_partitions",
        ~c"false",
        ~c"-connect_all",
        ~c"false",
        ~c"-kernel",
        ~c"inet_dist_listen_min",
        ~c"#{s.dist_port}",
        ~c"-kernel",
        ~c"inet_dist_listen_max",
        ~c"#{s.dist_port}"
      ] ++ Enum.flat_map(:code.get_path(), &[~c"-pa", &1])

    Agent.update(ctx.state, &%{&1 | held: release(&1.held, node)})

    {:ok, peer, ^node} =
      ExESDB.Test.Peer.start(%{
        name: String.to_atom(name),
        args: args,
        env: env(s.ip),
        wait_boot: 60_000
      })

    os_pid = :erpc.call(node, :os, :getpid, []) |> List.to_integer()

    Agent.update(
      ctx.state,
      &%{&1 | peers: Map.put(&1.peers, node, peer), os_pids: Map.put(&1.os_pids, node, os_pid)}
    )

    :ok = :erpc.call(node, ClusterPeer, :start, [s.store_opts], 60_000)
    # its connections to every C node are up before the load starts
    wait_until(
      fn ->
        :erpc.call(node, __MODULE__, :relays_up?, [
          ctx.store,
          ctx.specs[node].store_opts[:cnode],
          ctx.cnodes
        ])
      end,
      30_000
    )
  end

  @doc """
  Start a client node killed -9 (kill/2, await_down/1) again: the same
  name and ports, its store on the C node backend homed on the same C node.
  """
  def restart_client(ctx, node) do
    [name, _] = node |> Atom.to_string() |> String.split("@")
    # its name leaves epmd when its socket closes
    wait_until(
      fn -> :erl_epmd.port_please(String.to_charlist(name), ~c"localhost") == :noport end,
      10_000
    )

    start_client(ctx, node)
    :ok
  end

  @doc "Hold a node's ports while it is down (start_client and start_cnode let them go)."
  def hold_ports(ctx, node),
    do: Agent.update(ctx.state, &%{&1 | held: hold(&1.held, node, ctx.specs[node])})

  @doc """
  (on a client) A transient subscription to a stream nobody writes,
  held by a process of its own until the node goes: a session member on
  the client's C node that must go with the client.
  """
  def hold_subscription(store) do
    parent = self()

    pid =
      spawn(fn ->
        r = ExESDB.Subscriptions.subscribe(store, {:by_stream, "chaos-probe"}, self())
        send(parent, {:probe, self(), r})
        receive do: (:never -> :ok)
      end)

    receive do
      {:probe, ^pid, r} -> r
    after
      30_000 -> {:error, :timeout}
    end
  end

  @doc "Members held by sessions on a C node (its stats), nil when it does not answer."
  def subscribers(cn) do
    case call(cn, {:stats}, 2_000) do
      {:ok, %{subscribers: n}} -> n
      _ -> nil
    end
  end

  @doc false
  # (on a client) whether the store's relays to every C node are there
  def relays_up?(store, home, cnodes) do
    Enum.all?(cnodes, fn cn ->
      name =
        if cn == home,
          do: ExESDB.CNode.Connection.relay_name(store),
          else: ExESDB.CNode.Connection.relay_name(store, cn)

      Process.whereis(name) != nil
    end)
  end

  # ---- the final state --------------------------------------------------

  @doc """
  A C node replica's $all and every stream, read from it directly, as
  the checker takes them (ids as UUID text).
  """
  def final_state(cn) do
    all = read_all(cn, 0, [])

    streams =
      all
      |> Enum.map(& &1.stream_id)
      |> Enum.uniq()
      |> Map.new(&{&1, read_stream(cn, &1, 0, [])})

    %{all: all, streams: streams}
  end

  defp read_all(cn, from, acc) do
    {:ok, tuples, _next} = call(cn, {:read_all, from, @page, :forward}, 30_000)

    case tuples do
      [] -> acc |> Enum.reverse() |> Enum.concat()
      ts -> read_all(cn, elem(List.last(ts), 0) + 1, [Enum.map(ts, &event/1) | acc])
    end
  end

  defp read_stream(cn, stream, from, acc) do
    {:ok, tuples, _next} = call(cn, {:read_stream, stream, from, @page, :forward}, 30_000)

    case tuples do
      [] -> acc |> Enum.reverse() |> Enum.concat()
      ts -> read_stream(cn, stream, elem(List.last(ts), 2) + 1, [Enum.map(ts, &event/1) | acc])
    end
  end

  defp event(t),
    do: %{
      position: elem(t, 0),
      stream_id: elem(t, 1),
      version: elem(t, 2),
      event_id: ExESDB.UUID.to_string(elem(t, 3))
    }

  @doc "The workload against the clients, the C nodes' replicas checked at the end."
  def run(ctx, opts) do
    [
      store: ctx.store,
      nodes: ctx.nodes,
      target: ExESDB.Chaos.Target.CNode,
      replicas: ctx.cnodes,
      clients: 6,
      ops: 40,
      # a persistent subscription to $all through the first client, one
      # shared by 2 subscribers (partitioned by stream) through the
      # second: each runs on its client node and reads from that
      # client's C node, which the faults hit too; it must ride them out
      # itself (not subscribed again: one that stops shows as missed)
      subscribers: 1,
      shared_subscribers: 2,
      shared_node: Enum.at(ctx.nodes, 1),
      catch_up_ms: 30_000,
      consistency: :local,
      label: "cnode#{length(ctx.cnodes)}"
    ]
    |> Keyword.merge(opts)
    |> Keyword.merge(Workload.env_opts())
    |> Workload.run()
  end
end

defmodule ExESDB.Chaos.Target.CNode do
  @moduledoc false
  # The workload's target for ExESDB.Chaos.CNodes: operations through the
  # store on a client node (the C node backend, reads from the client's
  # own C node, which may lag), the final state read from a C node replica
  # itself.
  @behaviour ExESDB.Chaos.Target

  alias ExESDB.Chaos.Target.Local

  @impl true
  defdelegate append(node, store, stream, expected, events, opts), to: Local
  @impl true
  defdelegate read_stream(node, store, stream), to: Local
  @impl true
  def consistency, do: :local
  @impl true
  def final_state(cnode, _store), do: ExESDB.Chaos.CNodes.final_state(cnode)
  @impl true
  defdelegate subscribe(node, store, name, selector, pid), to: Local
  @impl true
  defdelegate subscribe(node, store, name, selector, pid, opts), to: Local
  @impl true
  defdelegate ack(node, store, sub, event), to: Local
end
