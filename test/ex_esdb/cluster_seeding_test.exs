defmodule ExESDB.ClusterSeedingTest do
  # ExESDB.Cluster.Seeding.prepare/3 on a data directory alone (no
  # nodes): the replica configuration a store opens with.
  use ExUnit.Case, async: true

  alias ExESDB.Cluster.Seeding

  setup do
    dir = Path.join(System.tmp_dir!(), "ex_esdb_seeding_#{ExESDB.Test.Unique.id()}")
    on_exit(fn -> File.rm_rf(dir) end)
    %{dir: dir}
  end

  defp config(id, members) do
    %{
      id: id,
      nodes: %{1 => :a@h, 2 => :b@h, 3 => :c@h},
      nif: %{id: id, address: "h:7420", members: members}
    }
  end

  @seeds [{1, "h:7420"}, {2, "h:7421"}, {3, "h:7422"}]

  # A member that came back under a new id (a lost data directory,
  # replaced from a copy) keeps that id in raft/node_id; killed and
  # started again it must open as that id, not as its seed list position
  # (the C replica refuses a store whose node_id is another's:
  # {:cannot_open_store, _, :invalid_argument}, chaos_replace_test).
  test "a replaced seed opens under the id its raft state holds", %{dir: dir} do
    File.mkdir_p!(Path.join(dir, "raft"))
    File.write!(Path.join([dir, "raft", "node_id"]), "99459888325\n")

    c = Seeding.prepare(%{}, dir, config(2, @seeds))

    assert c.id == 99_459_888_325
    assert c.nif.id == 99_459_888_325
    assert c.nif.members == []
  end

  test "a seed whose raft state holds its own id opens as configured", %{dir: dir} do
    File.mkdir_p!(Path.join(dir, "raft"))
    File.write!(Path.join([dir, "raft", "node_id"]), "2\n")

    assert Seeding.prepare(%{}, dir, config(2, @seeds)) == config(2, @seeds)
  end

  # An unreadable node_id is the replica's to report ({:corrupt, _}).
  test "an unreadable node_id leaves the configuration alone", %{dir: dir} do
    File.mkdir_p!(Path.join(dir, "raft"))
    File.write!(Path.join([dir, "raft", "node_id"]), "garbage")

    assert Seeding.prepare(%{}, dir, config(2, @seeds)) == config(2, @seeds)
  end

  # A seed that is not running and cannot be reached (no VM by that name
  # on this host: epmd refuses at once).
  defp silent_seed do
    [_, host] = node() |> Atom.to_string() |> String.split("@")
    :"nobody_#{ExESDB.Test.Unique.id()}@#{host}"
  end

  defp options(seeds), do: %{seed_nodes: seeds, store_id: :seeding_test, seed_wait: 0}

  # A seed without raft state must not bootstrap (as the voter it may
  # have been) while another seed does not answer: that one may be a
  # running member recording it, cut off or slow.
  test "a seed without raft state does not bootstrap while a seed does not answer", %{dir: dir} do
    File.mkdir_p!(dir)

    assert_raise RuntimeError, ~r/do not answer/, fn ->
      Seeding.prepare(options([node(), silent_seed()]), dir, config(2, @seeds))
    end
  end

  test "a seed whose seeds all answer, none running, bootstraps", %{dir: dir} do
    File.mkdir_p!(dir)
    assert Seeding.prepare(options([node()]), dir, config(1, @seeds)) == config(1, @seeds)
  end

  # Killed between the fetched copy's rename (data.mdb.copy) and its
  # install: the next start installs it and, with no raft state yet, asks
  # the members again rather than opening as its seed id.
  test "a copy installed with no raft state is not opened as the seed", %{dir: dir} do
    File.mkdir_p!(dir)
    File.write!(Path.join(dir, "data.mdb.copy"), "a copy")

    assert_raise RuntimeError, ~r/do not answer/, fn ->
      Seeding.prepare(options([node(), silent_seed()]), dir, config(2, @seeds))
    end

    assert File.read!(Path.join(dir, "data.mdb")) == "a copy"
    refute File.exists?(Path.join(dir, "data.mdb.copy"))
  end

  # A running member on the previous release answers without :members
  # (its configuration's ids came later): the ids of its records and the
  # seeds' are taken, and the store's start does not raise (KeyError).
  test "a member's answer without :members (an older release) is read" do
    answers = [
      {:a@h, %{applied: 3, leader?: true, recorded: %{"b@h" => 7}}},
      {:b@h, %{applied: 3, leader?: false, recorded: %{}, members: [1, 8]}}
    ]

    assert Seeding.taken(answers, config(4, [])) == MapSet.new([1, 2, 3, 7, 8])
  end

  # initial_cluster: :new counts the seeds forming under :new only: a
  # wiped seed of a cluster that exists, restarted under :auto (as it
  # should be), waits too, and counted toward a :new majority.
  test ":new counts only the seeds forming under :new" do
    o = %{seed_nodes: [node(), :b@h, :c@h], store_id: :seeding_test}

    assert Seeding.not_yet(:new, o, [{:b@h, {:forming, :auto}}, {:c@h, :unreachable}]) =~
             "majority"

    assert Seeding.not_yet(:new, o, [{:b@h, {:forming, nil}}, {:c@h, :unreachable}]) =~
             "majority"

    assert Seeding.not_yet(:new, o, [{:b@h, {:forming, :new}}, {:c@h, :unreachable}]) == nil
  end
end
