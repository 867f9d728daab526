defmodule ExESDB.ClusterSeedingCopyTest do
  # The copy a member makes for a node fetching its store
  # (ExESDB.Cluster.Seeding.fetch/5, copy_open/2), on one node: a fetch
  # that fails, again and again, must not leave copies piling up beside
  # the member's store (each one a full compacted backup).
  use ExUnit.Case, async: true

  alias ExESDB.{Cluster.Seeding, NewEvent, Streams}

  setup context, do: ExESDB.Test.NifBackend.start_store(context)

  defp copies(store) do
    {:ok, s} = ExESDB.Store.fetch(store)
    Path.wildcard("#{s.path}.copy-*")
  end

  defp wait_until(f, ms \\ 5_000) do
    cond do
      f.() -> true
      ms <= 0 -> false
      true -> Process.sleep(20) && wait_until(f, ms - 20)
    end
  end

  test "a fetch whose receiving side fails leaves no copy behind", %{store: s, data_dir: dir} do
    {:ok, 1} = Streams.append_events(s, "a", :no_stream, [%NewEvent{event_type: "t", data: 1}])
    into = Path.join(dir, "into")
    # the receiver cannot open its .tmp (as on a full disk)
    File.mkdir_p!(Path.join(into, "data.mdb.copy.tmp"))

    for _ <- 1..3 do
      assert_raise MatchError, fn -> Seeding.fetch(node(), s, into, 0o600) end
    end

    assert wait_until(fn -> copies(s) == [] end), "copies left: #{inspect(copies(s))}"
  end

  test "a requester asking again replaces its earlier copy", %{store: s} do
    {:ok, _h1, src1, _} = Seeding.copy_open(s, self())
    {:ok, _h2, src2, size} = Seeding.copy_open(s, self())

    assert [dir] = copies(s)
    assert Path.dirname(src2) == dir
    refute File.exists?(src1)
    assert File.stat!(src2).size == size
  end
end
