defmodule ExESDB.CNodeCopyServeTest do
  # The C node's copy_* requests (c_src/cnode/copy_serve.c): what a C node
  # replica pulls a store copy with (cnode_copy_test.exs), served by any
  # C node. Checked here on a plain store: pieces capped at 1 MiB, the
  # announced size and CRC-32C, the copy a store holding every event,
  # bad arguments refused, nothing left on disk, the copy let go at
  # copy_close and when its connection closes. In make asan-cnode.
  use ExUnit.Case, async: false

  import Bitwise
  import ExESDB.Test.ClusterHelpers, only: [wait_until: 2]
  alias ExESDB.Test.Crc32c
  alias ExESDB.Test.CNodeCluster

  @moduletag timeout: 120_000
  @bin System.get_env("ESDB_CNODE_BIN") || Path.expand("../../priv/ex_esdb_cnode", __DIR__)
  @piece 1 <<< 20

  setup do
    %{dir: ExESDB.Test.ClusterHelpers.tmp_dir!("ex_esdb_cncs")}
  end

  defp host, do: CNodeCluster.host()

  defp start_cnode(dir) do
    name = :"cncs#{ExESDB.Test.Unique.id()}@#{host()}"
    store = Path.join(dir, "store")

    args = ~w(--name #{name} --store #{store} --cookie-stdin --stop-on-eof --durability nosync)

    {port, os_pid} = CNodeCluster.open(@bin, args)
    CNodeCluster.kill_at_exit(os_pid)

    receive do
      {^port, {:data, {:eol, "ready " <> _}}} -> :ok
    after
      15_000 -> flunk("no ready line")
    end

    true = Node.connect(name)
    {:ok, 1} = call(name, {:hello, 1})
    %{name: name, os_pid: os_pid, store: store}
  end

  defp call(node, request, ms \\ 10_000), do: CNodeCluster.call(node, request, ms)

  # the C node's descriptors of unlinked files (a copy held)
  defp held(cn) do
    for fd <- File.ls!("/proc/#{cn.os_pid}/fd"),
        {:ok, target} <- [File.read_link("/proc/#{cn.os_pid}/fd/#{fd}")],
        String.ends_with?(target, "(deleted)"),
        do: target
  end

  defp pull(cn, _h, at, size, acc) when at >= size, do: {IO.iodata_to_binary(acc), cn}

  defp pull(cn, h, at, size, acc) do
    {:ok, bin} = call(cn.name, {:copy_read, h, at, 4 * @piece})
    assert byte_size(bin) == min(@piece, size - at)
    pull(cn, h, at + byte_size(bin), size, [acc, bin])
  end

  test "a copy pulled in pieces of at most 1 MiB is the store, with the announced size " <>
         "and CRC; nothing is left on disk",
       %{dir: dir} do
    cn = start_cnode(dir)

    for i <- 1..3 do
      e = {ExESDB.UUID.uuid4_binary(), "t", :crypto.strong_rand_bytes(500_000), "m", nil, nil}
      assert {:ok, _, _} = call(cn.name, {:append, "s#{i}", :any, [e]})
    end

    before = File.ls!(cn.store) |> Enum.sort()
    assert {:ok, h, size, crc} = call(cn.name, {:copy_open})
    assert size > @piece
    assert [_] = held(cn)
    assert File.ls!(cn.store) |> Enum.sort() == before

    {copy, _} = pull(cn, h, 0, size, [])
    assert byte_size(copy) == size
    assert Crc32c.crc32c(copy) == crc
    assert {:ok, <<>>} = call(cn.name, {:copy_read, h, size, 10})
    assert {:ok, <<>>} = call(cn.name, {:copy_read, h, size + 1_000_000, 10})
    assert :ok = call(cn.name, {:copy_close, h})
    assert {:error, {:invalid_copy, ^h}} = call(cn.name, {:copy_read, h, 0, 10})
    assert {:error, {:invalid_copy, ^h}} = call(cn.name, {:copy_close, h})
    assert held(cn) == []

    # the copy opens as a store holding every event
    restored = Path.join(dir, "restored")
    File.mkdir_p!(restored)
    File.write!(Path.join(restored, "data.mdb"), copy)
    {:ok, ref} = :ex_esdb_backend.open(restored, %{})
    {:ok, copied, _} = :ex_esdb_backend.read_all(ref, 0, 100, :forward)
    {:ok, served, _} = call(cn.name, {:read_all, 0, 100, :forward})
    assert length(copied) == 3

    assert Enum.map(copied, &{elem(&1, 0), elem(&1, 3)}) ==
             Enum.map(served, &{elem(&1, 0), elem(&1, 3)})

    :ok = :ex_esdb_backend.close(ref)
  end

  test "bad copy requests are refused and the node goes on; a copy goes with its connection",
       %{dir: dir} do
    cn = start_cnode(dir)
    assert {:error, {:invalid_copy, 7}} = call(cn.name, {:copy_read, 7, 0, 10})
    assert {:error, {:invalid_request, :copy_read}} = call(cn.name, {:copy_read, -1, 0, 10})
    assert {:error, {:invalid_request, :copy_read}} = call(cn.name, {:copy_read, 1, "0", 10})
    assert {:error, {:invalid_request, :copy_close}} = call(cn.name, {:copy_close, 1 <<< 64})
    assert {:error, {:invalid_request, :arity}} = call(cn.name, {:copy_read, 1, 0})
    assert {:error, {:invalid_request, :arity}} = call(cn.name, {:copy_open, 1})
    assert {:error, {:invalid_request, :unknown_operation}} = call(cn.name, {:copy_frob})

    # asking again lets go of the earlier copy
    assert {:ok, h1, _, _} = call(cn.name, {:copy_open})
    assert {:ok, h2, _, _} = call(cn.name, {:copy_open})
    assert h1 != h2
    assert {:error, {:invalid_copy, ^h1}} = call(cn.name, {:copy_read, h1, 0, 10})
    assert [_] = held(cn)

    # the connection closes: its copy goes
    true = Node.disconnect(cn.name)
    wait_until(fn -> held(cn) == [] end, 5_000)
    true = Node.connect(cn.name)
    {:ok, 1} = call(cn.name, {:hello, 1})
    assert {:error, {:invalid_copy, ^h2}} = call(cn.name, {:copy_read, h2, 0, 10})
    assert {:ok, _, _, _} = call(cn.name, {:copy_open})
  end

  # The soft RLIMIT_NOFILE of pid set to n (prlimit(1)); its old value.
  defp nofile(pid, n) do
    {old, 0} =
      System.cmd("prlimit", ["--pid", "#{pid}", "--nofile", "--raw", "--noheadings", "-o", "SOFT"])

    {_, 0} = System.cmd("prlimit", ["--pid", "#{pid}", "--nofile=#{n}:"])
    String.trim(old)
  end

  test "a read of a held copy without a descriptor to spare answers the errno, not invalid_copy",
       %{dir: dir} do
    cn = start_cnode(dir)
    assert {:ok, h, _, _} = call(cn.name, {:copy_open})
    # every descriptor below the limit taken: the read's dup gets EMFILE
    used = for fd <- File.ls!("/proc/#{cn.os_pid}/fd"), do: String.to_integer(fd)
    free = Enum.find(0..100_000, &(&1 not in used))
    old = nofile(cn.os_pid, free)

    reply = call(cn.name, {:copy_read, h, 0, 10})
    nofile(cn.os_pid, old)
    assert {:error, reason} = reply
    refute match?({:invalid_copy, _}, reason)
    # the copy is still there
    assert {:ok, <<_::binary-size(10)>>} = call(cn.name, {:copy_read, h, 0, 10})
  end
end
