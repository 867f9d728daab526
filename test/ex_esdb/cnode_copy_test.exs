defmodule ExESDB.CNodeCopyTest do
  # Store copies between C node replicas (c_src/cnode/copy_pull.c,
  # copy_serve.c; docs/CLUSTER.md "Store copies between C nodes"): raft
  # with a tiny window (a marker snapshot every 32 entries, 128 kept after
  # it), so a member away for a few hundred writes, or a new one, gets the
  # leader's marker and must pull a copy of a member's store from another
  # C node. Real OS processes, real distribution and TCP, kill -9: out of
  # the valgrind run (C tests only); under ASan in make asan-cnode.
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers
  alias ExESDB.Test.CNodeCluster

  @moduletag skip: not cluster_support?() && "no raft in this build (make raft)"
  @moduletag timeout: 180_000

  # ESDB_CNODE_BIN runs another build (make asan-cnode: ASan+UBSan, with raft)
  @bin System.get_env("ESDB_CNODE_BIN") || Path.expand("../../priv/ex_esdb_cnode", __DIR__)
  @window ["--raft-snapshot-threshold", "32", "--raft-trailing-bytes", "1"]
  # writes while a member is away: well past threshold + trailing (160)
  @away 400

  setup do
    %{dir: ExESDB.Test.ClusterHelpers.tmp_dir!("ex_esdb_cncopy")}
  end

  defp host, do: CNodeCluster.host()

  defp specs(dir, n) do
    u = ExESDB.Test.Unique.id()

    for {p, i} <- Enum.with_index(free_ports(n), 1),
        do: %{
          id: i,
          address: "127.0.0.1:#{p}",
          name: :"cncopy#{u}_#{i}@#{host()}",
          dir: Path.join(dir, "store#{i}")
        }
  end

  defp member_flags(specs),
    do: Enum.flat_map(specs, &["--raft-member", "#{&1.id},#{&1.address},#{&1.name}"])

  # Start the C node of spec with `flags` in a process of its own (its
  # Port's owner, forwarding its output lines to the test): spec with
  # os_pid once ready and said hello. kill -9 at on_exit.
  defp launch(spec, flags) do
    case start_cnode(spec, flags) do
      {:ok, spec} -> spec
      {:error, why} -> flunk(why)
    end
  end

  defp start_cnode(spec, flags) do
    test = self()

    args = CNodeCluster.replica_args(spec, spec.dir, [], extra: @window ++ flags)

    owner =
      spawn(fn ->
        {port, os_pid} = CNodeCluster.open(@bin, args)
        forward(test, spec.name, port, os_pid)
      end)

    receive do
      {:ready, name, os_pid} when name == spec.name ->
        on_exit(fn ->
          Process.exit(owner, :kill)
          CNodeCluster.stop_or_kill([os_pid])
        end)

        true = Node.connect(spec.name)
        {:ok, 1} = call(spec.name, {:hello, 1})
        {:ok, Map.put(spec, :os_pid, os_pid)}

      {:exited, name, s} when name == spec.name ->
        {:error, "C node exited #{s}: #{inspect(lines_of(spec.name))}"}
    after
      15_000 -> flunk("no ready line from #{spec.name}")
    end
  end

  # the output lines of name received so far (why a C node exited)
  defp lines_of(name) do
    receive do
      {:line, ^name, line} -> [line | lines_of(name)]
    after
      0 -> []
    end
  end

  defp forward(test, name, port, os_pid) do
    receive do
      {^port, {:data, {:eol, "ready " <> _}}} ->
        send(test, {:ready, name, os_pid})
        forward(test, name, port, os_pid)

      {^port, {:data, {:eol, line}}} ->
        send(test, {:line, name, line})
        forward(test, name, port, os_pid)

      {^port, {:data, _}} ->
        forward(test, name, port, os_pid)

      {^port, {:exit_status, s}} ->
        send(test, {:exited, name, s})
    end
  end

  defp call(node, request, ms \\ 5_000), do: CNodeCluster.call(node, request, ms)

  # A raft port picked free may be taken before its C node binds it (a
  # connection's ephemeral port on a loaded machine): that C node exits
  # before its ready line. Then three new ones, on new ports, in a
  # directory of their own; the ones started are killed and their exits
  # consumed (a test waits for the exit of the member it kills).
  defp start_three(dir, tries \\ 3) do
    specs = specs(Path.join(dir, "try#{tries}"), 3)
    flags = member_flags(specs)

    started =
      Enum.reduce_while(specs, [], fn spec, acc ->
        case start_cnode(spec, flags) do
          {:ok, cn} -> {:cont, [cn | acc]}
          {:error, why} -> {:halt, {:error, why, acc}}
        end
      end)

    case started do
      {:error, why, cns} ->
        for cn <- cns do
          System.cmd("kill", ["-9", "#{cn.os_pid}"])
          name = cn.name
          assert_receive {:exited, ^name, _}, 5_000
        end

        if tries > 1, do: start_three(dir, tries - 1), else: flunk(why)

      cns ->
        Enum.reverse(cns)
    end
  end

  defp event(i), do: {ExESDB.UUID.uuid4_binary(), "t", "d#{i}", "m", nil, nil}

  # n appends of one event each, one after another: one raft entry each
  defp write(leader, stream, n) do
    for i <- 1..n do
      assert {:ok, _, _} = call(leader.name, {:append, stream, :any, [event(i)]}, 10_000)
    end
  end

  defp info(cn) do
    {:ok, i} = call(cn.name, {:cluster_info})
    i
  end

  defp read_all(node), do: CNodeCluster.read_all(node)

  # every one of cns applied what the leader did, and their $all agree
  defp assert_same(cns, leader, n) do
    wait_until(
      fn ->
        applied = info(leader).applied
        Enum.all?(cns, &(info(&1) |> then(fn i -> i.applied == applied and not i.needs_copy end)))
      end,
      60_000
    )

    [first | rest] = for cn <- cns, do: read_all(cn.name)
    assert length(first) == n
    for other <- rest, do: assert(other == first, "the members' $all differ")
    first
  end

  # name said it installed a copy (else: what it said)
  defp assert_copied(name) do
    receive do
      {:line, ^name, "ex_esdb_cnode: copy: installed a copy" <> _} -> :ok
    after
      5_000 -> flunk("#{name} installed no copy; its output: #{inspect(lines_of(name))}")
    end
  end

  test "a member stopped while the others wrote past raft's window comes back through a " <>
         "copy pulled from another C node: every event, same positions and versions",
       %{dir: dir} do
    cns = start_three(dir)
    l = CNodeCluster.leader(cns)
    [f, _] = cns -- [l]
    write(l, "a", 20)
    assert_same(cns, l, 20)

    System.cmd("kill", ["-9", "#{f.os_pid}"])
    assert_receive {:exited, name, _}, 5_000
    assert name == f.name
    write(l, "b", @away)

    f = launch(f, member_flags(cns))
    l = CNodeCluster.leader(cns)
    events = assert_same(cns, l, 20 + @away)
    assert_copied(f.name)
    # the pulled file and the restore's own went with the pull
    assert File.ls!(f.dir) |> Enum.sort() == File.ls!(l.dir) |> Enum.sort()

    # the writer goes on from the copy: later writes arrive in order
    write(l, "a", 5)
    after_copy = assert_same(cns, l, 25 + @away)
    assert Enum.take(after_copy, 20 + @away) == events

    assert [21, 22, 23, 24, 25] ==
             for({_, "a", v, _, _, _, _, _, _, _} <- after_copy, v > 20, do: v)
  end

  test "a member wiped and started again with --raft-wiped rejoin comes back as a new " <>
         "voter through a copy; the cluster writes meanwhile",
       %{dir: dir} do
    cns = start_three(dir)
    l = CNodeCluster.leader(cns)
    [f, g] = cns -- [l]
    write(l, "a", 20)
    assert_same(cns, l, 20)

    # every member recorded itself (the wiped one is recognised by it)
    for cn <- cns,
        do:
          wait_until(fn ->
            match?({:ok, _}, call(l.name, {:checkpoint_get, "ex_esdb:cnode:#{cn.id}"}))
          end)

    System.cmd("kill", ["-9", "#{f.os_pid}"])
    assert_receive {:exited, name, _}, 5_000
    assert name == f.name
    File.rm_rf!(f.dir)
    write(l, "b", @away)

    # before: exit status 3 (it refused to start as its old voter)
    f = launch(f, member_flags(cns) ++ ["--raft-wiped", "rejoin"])
    write(l, "b", 5)

    # its old id removed, a new one at its raft address a voter
    new_id =
      wait_until(
        fn ->
          {:ok, ms} = call(CNodeCluster.leader([l, g]).name, {:cluster_members})

          case Enum.find(ms, fn {_, a, _} -> a == f.address end) do
            {id, _, :voter} when id != f.id -> if List.keymember?(ms, f.id, 0), do: nil, else: id
            _ -> nil
          end
        end,
        60_000
      )

    assert info(f).id == new_id
    l = CNodeCluster.leader(cns)
    assert_same(cns, l, 25 + @away)
    assert_copied(f.name)
  end

  test "a new, empty C node added at run time gets a copy and then the log",
       %{dir: dir} do
    cns = start_three(dir)
    l = CNodeCluster.leader(cns)
    write(l, "a", @away)

    [spare] = specs(dir, 1)
    spare = %{spare | id: 4, dir: Path.join(dir, "store4")}
    flags = Enum.flat_map(cns, &["--raft-copy-from", Atom.to_string(&1.name)])
    spare = launch(spare, flags)

    assert :ok = call(l.name, {:cluster_add, 4, spare.address}, 10_000)
    assert :ok = call(l.name, {:cluster_assign, 4, :voter}, 30_000)
    write(l, "a", 5)
    all = [spare | cns]
    assert_same(all, l, @away + 5)
    assert_copied(spare.name)

    assert {:ok, ms} = call(l.name, {:cluster_members})
    assert {4, spare.address, :voter} in ms
  end

  test "a member added at run time by name, restarted with no copy source given after " <>
         "falling behind, pulls its copy from the members its store names",
       %{dir: dir} do
    cns = start_three(dir)
    l = CNodeCluster.leader(cns)
    write(l, "a", 20)

    [spare] = specs(dir, 1)
    spare = %{spare | id: 4, dir: Path.join(dir, "store4")}
    flags = Enum.flat_map(cns, &["--raft-copy-from", Atom.to_string(&1.name)])
    spare = launch(spare, flags)
    assert :ok = call(l.name, {:cluster_add, 4, spare.address, spare.name}, 10_000)
    assert :ok = call(l.name, {:cluster_assign, 4, :voter}, 30_000)
    all = [spare | cns]
    assert_same(all, l, 20)

    System.cmd("kill", ["-9", "#{spare.os_pid}"])
    assert_receive {:exited, name, _}, 5_000
    assert name == spare.name
    write(l, "b", @away)

    # neither --raft-member nor --raft-copy-from: the names replicated in
    # its store (cluster_add with a name) are all it has
    spare = launch(spare, [])
    l = CNodeCluster.leader(cns)
    assert_same([spare | cns], l, 20 + @away)
    assert_copied(spare.name)
  end

  test "a pull whose source is killed midway leaves nothing behind; the next pull, from " <>
         "another member, installs the copy",
       %{dir: dir} do
    cns = start_three(dir)
    l = CNodeCluster.leader(cns)
    [f, _] = cns -- [l]

    # ~40 MB: the pull takes long enough (40 pieces) to be cut
    for i <- 1..80 do
      e = {ExESDB.UUID.uuid4_binary(), "t", :crypto.strong_rand_bytes(500_000), "m", nil, nil}
      assert {:ok, _, _} = call(l.name, {:append, "big", :any, [e]}, 10_000)
      _ = i
    end

    assert_same(cns, l, 80)
    System.cmd("kill", ["-9", "#{f.os_pid}"])
    assert_receive {:exited, name, _}, 5_000
    assert name == f.name
    write(l, "b", @away)

    # the kill of the member pulled from is ready before the pull starts:
    # one forked once its line came took longer than the whole pull
    # (~300 ms) on a loaded machine
    killers = for cn <- cns, cn.name != f.name, into: %{}, do: {Atom.to_string(cn.name), killer(cn)}

    f = launch(f, member_flags(cns))
    from = pulling(f.name)
    source = Enum.find(cns, &(Atom.to_string(&1.name) == from))
    Port.command(Map.fetch!(killers, from), "\n")
    assert_receive {:line, name, "ex_esdb_cnode: copy: pulling " <> failed}, 10_000
    assert name == f.name
    assert failed =~ ~r/^#{from}'s store failed/

    # the next pull goes to the member left
    [other] = Enum.reject(cns, &(&1.name in [f.name, source.name]))
    assert pulling(f.name) == Atom.to_string(other.name)
    assert_same([f, other], other, 80 + @away)
    assert_copied(f.name)
    assert File.ls!(f.dir) |> Enum.sort() == File.ls!(other.dir) |> Enum.sort()
  end

  # A shell that kill -9s cn once it reads a line (kill is its builtin:
  # nothing to fork then); at the test's end its input closes unread.
  defp killer(cn) do
    Port.open({:spawn_executable, "/bin/sh"}, [
      :binary,
      args: ["-c", "read x && kill -9 #{cn.os_pid}"]
    ])
  end

  # the C node `name` said it pulls a copy: from whom
  defp pulling(name) do
    receive do
      {:line, ^name, "ex_esdb_cnode: copy: the store is behind raft's snapshot: pulling " <> rest} ->
        [_, from] = Regex.run(~r/^a copy of (.*)'s store$/, rest)
        from
    after
      30_000 -> flunk("#{name} pulled no copy")
    end
  end
end
