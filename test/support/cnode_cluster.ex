defmodule ExESDB.Test.CNodeCluster do
  @moduledoc false
  # Three C nodes (priv/ex_esdb_cnode --raft-*) each owning a replica of
  # one store, raft on loopback, started through Ports (kill -9 at the
  # test's on_exit). And the conformance suites' backend on them: start_store/1
  # gives a store on the C node backend whose own C node is a follower.

  import ExESDB.Test.ClusterHelpers, only: [free_ports: 1, wait_until: 2]

  @doc """
  The C node executable the tests run: ESDB_CNODE_BIN (make asan-cnode:
  the ASan+UBSan build), else priv/ex_esdb_cnode. Read at run time:
  this module is compiled once, not per run.
  """
  def bin, do: System.get_env("ESDB_CNODE_BIN") || Path.expand("../../priv/ex_esdb_cnode", __DIR__)

  @doc "The host part of this node's name (C nodes are named <x>@host)."
  def host, do: node() |> Atom.to_string() |> String.split("@") |> List.last()

  @doc """
  Starts the three; [%{id, address, name, port, os_pid}] once each said
  hello. Options: :env (a function of a member's id and store directory:
  the OS environment its C node runs with; none by default), :extra
  (arguments after replica_args/4's, which a later one overrides).
  """
  def start(dir, durability \\ "nosync", opts \\ []), do: start_tries(dir, durability, opts, 3)

  # A raft port picked free may be taken meanwhile (a connection's
  # ephemeral port under load): that C node exits before its ready line.
  # Then three new ones on new ports, in a directory of their own.
  defp start_tries(dir, durability, opts, tries) do
    u = ExESDB.Test.Unique.id()
    dir = Path.join(dir, "cnodes#{u}")
    ports = free_ports(3)

    members =
      for {p, i} <- Enum.with_index(ports, 1),
          do: %{id: i, address: "127.0.0.1:#{p}", name: :"cnc#{u}_#{i}@#{host()}"}

    # The ports belong to a process of their own that outlives the test
    # process: the C nodes stay up while ExUnit stops the test's
    # supervised children (a system stopping writes its last checkpoints),
    # and go at on_exit.
    test = self()
    env = Keyword.get(opts, :env, fn _id, _store -> [] end)
    extra = Keyword.get(opts, :extra, [])
    owner = spawn(fn -> own(test, members, dir, durability, env, extra) end)

    # (the owner's end closes the ports: --stop-on-eof stops the C nodes)
    cns =
      receive do
        {:cnodes, ^owner, cns} ->
          cns

        {:cnodes_failed, ^owner, why} ->
          Process.exit(owner, :kill)
          if tries > 1, do: {:retry, why}, else: raise(why)
      after
        20_000 -> Process.exit(owner, :kill) && raise "C nodes not started"
      end

    case cns do
      {:retry, _why} ->
        start_tries(Path.dirname(dir), durability, opts, tries - 1)

      cns ->
        ExUnit.Callbacks.on_exit(fn ->
          # the owner's end closes the ports: the C nodes stop
          Process.exit(owner, :kill)
          stop_or_kill(Enum.map(cns, & &1.os_pid))
        end)

        for cn <- cns, do: true = Node.connect(cn.name)
        for cn <- cns, do: {:ok, 1} = call(cn.name, {:hello, 1})
        cns
    end
  end

  defp own(test, members, dir, durability, env, extra) do
    cns =
      for m <- members do
        store = Path.join(dir, "store#{m.id}")
        args = replica_args(m, store, members, durability: durability, extra: extra)
        {port, os_pid} = open(bin(), args, env.(m.id, store))
        Map.merge(m, %{port: port, os_pid: os_pid})
      end

    case Enum.find_value(cns, &await_ready(&1.port)) do
      nil -> send(test, {:cnodes, self(), cns})
      why -> send(test, {:cnodes_failed, self(), why})
    end

    drain()
  end

  defp drain do
    receive do
      _ -> drain()
    end
  end

  # nil once ready, else why not
  defp await_ready(port) do
    receive do
      {^port, {:data, {:eol, "ready " <> _}}} -> nil
      {^port, {:data, _}} -> await_ready(port)
      {^port, {:exit_status, s}} -> "C node exited #{s}"
    after
      15_000 -> "no ready line"
    end
  end

  @doc """
  The arguments of C node replica `m` (%{id:, address:, name:}) on the
  store directory `store`, as start/1 gives them: `members` as its
  --raft-member list ([] for a joiner); opts :durability ("nosync") and
  :extra (arguments after these).
  """
  def replica_args(m, store, members, opts \\ []) do
    [
      "--name",
      Atom.to_string(m.name),
      "--store",
      store,
      "--cookie-stdin",
      "--stop-on-eof",
      "--durability",
      Keyword.get(opts, :durability, "nosync"),
      "--raft-id",
      "#{m.id}",
      "--raft-address",
      m.address,
      "--raft-election-timeout-ms",
      "500",
      # a write through a follower waits until it learns of the commit:
      # the leader's next message (see CLUSTER.md)
      "--raft-heartbeat-ms",
      "20"
    ] ++
      Keyword.get(opts, :extra, []) ++
      Enum.flat_map(members, &["--raft-member", "#{&1.id},#{&1.address},#{&1.name}"])
  end

  @doc """
  Opens the C node binary `bin` with `args` (and OS `env`) as a port of
  the calling process, lines of output as {:line, 1024}, and gives it
  this node's cookie on stdin (for --cookie-stdin): {port, os_pid}.
  """
  def open(bin, args, env \\ []) do
    port =
      Port.open({:spawn_executable, bin}, [
        :binary,
        :exit_status,
        :stderr_to_stdout,
        {:line, 1024},
        args: args,
        env: env
      ])

    {:os_pid, os_pid} = Port.info(port, :os_pid)
    Port.command(port, Atom.to_string(Node.get_cookie()) <> "\n")
    {port, os_pid}
  end

  @doc """
  A C node of its own (no raft), as an operator would start it: store
  `store`, nosync, the cookie on its stdin, killed at the calling test's
  exit. Its name (prefix<n>@host) once it said ready.
  """
  def start_single(bin, prefix, store) do
    name = :"#{prefix}#{ExESDB.Test.Unique.id()}@#{host()}"

    {port, os_pid} =
      open(
        bin,
        ~w(--name #{name} --store #{store} --cookie-stdin --stop-on-eof --durability nosync)
      )

    kill_at_exit(os_pid)

    receive do
      {^port, {:data, {:eol, "ready " <> _}}} -> name
    after
      10_000 -> ExUnit.Assertions.flunk("#{name}: no ready line")
    end
  end

  @doc """
  At the calling test's exit, once its ports closed (call from the
  test process that owns the port): the C node stopped, or killed.
  """
  def kill_at_exit(os_pid), do: ExUnit.Callbacks.on_exit(fn -> stop_or_kill([os_pid]) end)

  # C nodes whose stdin closed (--stop-on-eof) stop as an operator's
  # would: an ASan build checks for leaks on the way out (make
  # asan-cnode reads its reports). Any still up after 10 s is killed -9.
  @doc false
  def stop_or_kill(os_pids) do
    deadline = System.monotonic_time(:millisecond) + 10_000

    for p <- os_pids do
      left = deadline - System.monotonic_time(:millisecond)

      unless gone?(p, max(left, 0)),
        do: System.cmd("kill", ["-9", "#{p}"], stderr_to_stdout: true)
    end

    :ok
  end

  defp gone?(os_pid, ms) do
    cond do
      not File.exists?("/proc/#{os_pid}") -> true
      ms <= 0 -> false
      true -> Process.sleep(20) && gone?(os_pid, ms - 20)
    end
  end

  @doc "The event ids of a C node's stream (its first 100 events), read from it directly."
  def stream_ids(node, stream) do
    case call(node, {:read_stream, stream, 0, 100, :forward}) do
      {:ok, tuples, _} -> Enum.map(tuples, &elem(&1, 3))
      {:error, :stream_not_found} -> []
    end
  end

  @doc "A request to a C node from this process (:no_reply after ms)."
  def call(node, request, ms \\ 5_000) do
    ref = make_ref()
    send({:esdb, node}, {:call, self(), ref, request})

    receive do
      {^ref, reply} -> reply
    after
      ms -> :no_reply
    end
  end

  @doc "Every event in a C node's $all, read from it directly in pages of 1000."
  def read_all(node), do: read_all(node, 0, [])

  defp read_all(node, from, acc) do
    {:ok, events, _next} = call(node, {:read_all, from, 1000, :forward}, 10_000)

    case events do
      [] -> acc |> Enum.reverse() |> Enum.concat()
      es -> read_all(node, elem(List.last(es), 0) + 1, [es | acc])
    end
  end

  @doc "The member every one of `cns` names as leader, once they agree."
  def leader(cns) do
    wait_until(
      fn ->
        infos = for cn <- cns, do: call(cn.name, {:cluster_info})

        case Enum.uniq(for {:ok, i} <- infos, do: i.leader_node) do
          [l] when l != nil and length(infos) == length(cns) -> Enum.find(cns, &(&1.name == l))
          _ -> nil
        end
      end,
      20_000
    )
  end

  @doc "ExESDB.System options for a store on `home` among `cns`."
  def system_opts(store, dir, home, cns),
    do: [
      store_id: store,
      data_dir: dir,
      cnode: home.name,
      cnode_cluster: Enum.map(cns, & &1.name)
    ]

  # ---- the conformance suites' backend ---------------------------------

  def start_store(context) do
    store = :"cncstore_#{ExESDB.Test.Unique.id()}"
    dir = Path.join(System.tmp_dir!(), "ex_esdb_test/#{store}")
    File.rm_rf!(dir)
    File.mkdir_p!(dir)
    cns = start(dir)
    [home | _] = cns -- [leader(cns)]
    opts = system_opts(store, dir, home, cns) ++ Map.get(context, :store_opts, [])

    # the connections to the other C nodes are up before the test writes
    {:ok, pid} = ExUnit.Callbacks.start_supervised({ExESDB.System, opts})

    for cn <- cns -- [home],
        do: wait_until(fn -> Process.whereis(:"exesdb_cnode_relay_#{store}@#{cn.name}") end, 10_000)

    ExUnit.Callbacks.on_exit(fn -> File.rm_rf(dir) end)
    %{store: store, data_dir: dir, system: pid, store_opts: opts, cnodes: cns}
  end

  def stop_store(%{store: store}),
    do: ExUnit.Callbacks.stop_supervised!(ExESDB.System.system_name(store))

  def restart_store(%{store: store, store_opts: opts}) do
    ExUnit.Callbacks.stop_supervised!(ExESDB.System.system_name(store))
    ExUnit.Callbacks.start_supervised!({ExESDB.System, opts})
    :ok
  end
end
