defmodule ExESDB.ClusterOptionsTest do
  # db_type: :cluster's options and the bootstrap rule (ExESDB.Cluster):
  # every seed derives the same configuration. Touches the OS environment.
  use ExUnit.Case, async: false
  doctest ExESDB.Cluster

  import Bitwise
  import ExESDB.Test.ClusterHelpers

  alias ExESDB.{Cluster, Options}

  @vars ~w(EX_ESDB_JOIN EX_ESDB_RAFT_PORT EX_ESDB_RAFT_BIND EX_ESDB_RAFT_ADDRESSES EX_ESDB_ELECTION_TIMEOUT EX_ESDB_HEARTBEAT EX_ESDB_SEED_NODES EX_ESDB_DB_TYPE EX_ESDB_INITIAL_CLUSTER)

  setup do
    on_exit(fn -> Enum.each(@vars, &System.delete_env/1) end)
  end

  test "cluster keys from the environment" do
    System.put_env("EX_ESDB_RAFT_PORT", "7001")
    System.put_env("EX_ESDB_RAFT_BIND", "0.0.0.0")
    System.put_env("EX_ESDB_RAFT_ADDRESSES", "a@h1=10.0.0.1:7001, b@h2=10.0.0.2:7002")
    System.put_env("EX_ESDB_ELECTION_TIMEOUT", "3000")
    System.put_env("EX_ESDB_HEARTBEAT", "500")
    o = Options.resolve()
    assert o.raft_port == 7001 and o.raft_bind == "0.0.0.0"
    assert o.raft_addresses == %{a@h1: "10.0.0.1:7001", b@h2: "10.0.0.2:7002"}
    assert o.election_timeout == 3000 and o.heartbeat == 500

    System.put_env("EX_ESDB_RAFT_ADDRESSES", "a@h1")
    assert_raise ArgumentError, ~r/EX_ESDB_RAFT_ADDRESSES/, fn -> Options.resolve() end
  end

  test "initial_cluster: :auto by default, :new or :existing, also from the environment" do
    assert Options.resolve().initial_cluster == :auto
    assert Options.resolve(initial_cluster: :new).initial_cluster == :new
    System.put_env("EX_ESDB_INITIAL_CLUSTER", "existing")
    assert Options.resolve().initial_cluster == :existing
    System.put_env("EX_ESDB_INITIAL_CLUSTER", "old")

    assert_raise ArgumentError, ~r/EX_ESDB_INITIAL_CLUSTER.*:auto, :new or :existing/, fn ->
      Options.resolve()
    end

    System.delete_env("EX_ESDB_INITIAL_CLUSTER")

    assert_raise ArgumentError, ~r/:initial_cluster/, fn ->
      Options.resolve(initial_cluster: :fresh)
    end
  end

  test "cnode_wiped: :refuse by default, :rejoin, also from the environment; " <>
         "a launched replica gets it as --raft-wiped" do
    assert Options.resolve().cnode_wiped == :refuse
    System.put_env("EX_ESDB_CNODE_WIPED", "rejoin")
    o = Options.resolve(backend: :cnode, cnode_cluster: [:a@h1, :b@h2], cnode_name: :a@h1)
    assert o.cnode_wiped == :rejoin
    System.delete_env("EX_ESDB_CNODE_WIPED")

    assert ["--raft-wiped", "rejoin"] in Enum.chunk_every(
             ExESDB.Backend.CNode.raft_args(o, :a@h1),
             2
           )

    assert_raise ArgumentError, ~r/:cnode_wiped/, fn -> Options.resolve(cnode_wiped: :yes) end
  end

  test "bad cluster values raise naming the key" do
    assert_raise ArgumentError, ~r/:raft_port/, fn -> Options.resolve(raft_port: 0) end
    assert_raise ArgumentError, ~r/:raft_bind/, fn -> Options.resolve(raft_bind: "localhost!") end

    assert_raise ArgumentError, ~r/:raft_addresses/, fn ->
      Options.resolve(raft_addresses: %{a@h: "no port"})
    end

    assert_raise ArgumentError, ~r/:heartbeat/, fn -> Options.resolve(heartbeat: 0) end
  end

  @tag skip: not cluster_support?() && "no raft in this build (make raft)"
  test "cluster mode needs this node among the seeds and a heartbeat below the election timeout" do
    assert_raise ArgumentError, ~r/seed_nodes is empty/, fn ->
      Options.resolve(db_type: :cluster)
    end

    assert_raise ArgumentError, ~r/not in seed_nodes/, fn ->
      Options.resolve(db_type: :cluster, seed_nodes: [:other@h])
    end

    assert_raise ArgumentError, ~r/below :election_timeout/, fn ->
      Options.resolve(db_type: :cluster, seed_nodes: [node()], heartbeat: 1000)
    end

    assert %{db_type: :cluster} = Options.resolve(db_type: :cluster, seed_nodes: [node()])

    # a node outside the seeds joins only when told to
    assert %{join: true} = Options.resolve(db_type: :cluster, seed_nodes: [:other@h], join: true)
    System.put_env("EX_ESDB_JOIN", "true")
    assert %{join: true} = Options.resolve(db_type: :cluster, seed_nodes: [:other@h])
  end

  test "every seed derives the same members, whatever order its list is in" do
    seeds = [:c@h3, :a@h1, :b@h2]

    base = %{
      raft_port: 7420,
      raft_bind: "127.0.0.1",
      raft_addresses: %{b@h2: "10.0.0.2:9000"},
      election_timeout: 1000,
      heartbeat: 100
    }

    configs =
      for self <- seeds do
        Cluster.config(Map.put(base, :seed_nodes, Enum.shuffle(seeds)), self)
      end

    assert configs |> Enum.map(& &1.nif.members) |> Enum.uniq() == [
             [{1, "h1:7420"}, {2, "10.0.0.2:9000"}, {3, "h3:7420"}]
           ]

    assert Enum.map(configs, & &1.id) == [3, 1, 2]

    assert Enum.map(configs, & &1.nif.bind_address) ==
             Enum.map([7420, 7420, 9000], &"127.0.0.1:#{&1}")

    assert configs |> Enum.map(& &1.nodes) |> Enum.uniq() == [%{1 => :a@h1, 2 => :b@h2, 3 => :c@h3}]
  end

  # A joiner's raft id is not derived from its name: a name that joins
  # again (removed, its disk wiped) must not come back under an id the
  # configuration may still hold, and two names must not share one.
  test "a joiner has a fresh random id, none a seed's, and no initial members" do
    o = %{
      seed_nodes: [:a@h1, :b@h2],
      raft_port: 7420,
      raft_bind: "127.0.0.1",
      raft_addresses: %{},
      election_timeout: 1000,
      heartbeat: 100
    }

    c = Cluster.config(o, :j@h9)
    assert c.nif.members == [] and c.nif.id == c.id
    assert c.nif.address == "h9:7420"
    ids = for _ <- 1..50, do: Cluster.config(o, :j@h9).id
    assert length(Enum.uniq([c.id | ids])) == 51
    assert Enum.all?(ids, &(&1 > 2 and &1 < 1 <<< 63))
  end

  test "a fresh id is none of the ids taken" do
    taken = MapSet.new(1..3)
    assert Enum.all?(1..1000, fn _ -> Cluster.fresh_id(taken) not in taken end)
    # with every id but one taken the one left comes (drawn until found)
    assert Cluster.fresh_id(MapSet.new(Enum.to_list(1..8) -- [7]), 1..8) == 7
  end
end
