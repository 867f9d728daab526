defmodule ExESDB.ClusterNifTest do
  # The NIF's cluster mode (cluster_open/3 over c_src/replica): three
  # replicas in this VM, raft over TCP on loopback.
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers

  @moduletag skip: not cluster_support?() && "no raft in this build (make raft)"

  setup do
    dir = Path.join(System.tmp_dir!(), "ex_esdb_cluster_nif_#{ExESDB.Test.Unique.id()}")
    File.rm_rf!(dir)
    on_exit(fn -> File.rm_rf(dir) end)
    %{dir: dir}
  end

  defp start3(dir) do
    ports = free_ports(3)
    members = for {p, i} <- Enum.with_index(ports, 1), do: {i, "127.0.0.1:#{p}"}

    stores =
      for {i, addr} <- members do
        {:ok, s} =
          :ex_esdb_nif.cluster_open(
            "#{dir}/n#{i}",
            %{durability: :nosync},
            %{
              id: i,
              address: addr,
              members: members,
              notify: self(),
              election_timeout_ms: 300,
              heartbeat_ms: 30
            }
          )

        s
      end

    on_exit(fn -> Enum.each(stores, &:ex_esdb_nif.close/1) end)
    stores
  end

  defp info(s), do: elem(:ex_esdb_nif.cluster_info(s), 1)

  defp leader(stores) do
    wait_until(fn ->
      ids = Enum.map(stores, &info(&1).leader_id)
      l = hd(ids)
      l != 0 and Enum.all?(ids, &(&1 == l)) and Enum.at(stores, l - 1)
    end)
  end

  defp event, do: {:crypto.strong_rand_bytes(16), "T", "data", "", nil, nil}

  defp append(s, stream, events) do
    ref = make_ref()

    case :ex_esdb_nif.append(s, ref, stream, :any, events) do
      :ok -> receive(do: ({^ref, reply} -> reply))
      error -> error
    end
  end

  test "three replicas form one cluster; the leader's appends reach every replica", %{dir: dir} do
    stores = start3(dir)
    l = leader(stores)
    assert info(l).leader
    assert_receive {:ex_esdb_leader, id, addr, _}, 5_000
    assert id in 1..3 and is_binary(addr)

    assert {:ok, _, _} = append(l, "s", [event(), event()])

    for s <- stores do
      wait_until(fn -> info(s).applied >= info(l).applied end)
      {:ok, evs, _} = :ex_esdb_nif.read_stream(s, "s", 0, 10, :forward)
      assert length(evs) == 2
    end

    {:ok, members} = :ex_esdb_nif.cluster_members(hd(stores))
    assert [{1, _, :voter}, {2, _, :voter}, {3, _, :voter}] = Enum.sort(members)
    followers = stores -- [l]
    assert {:error, :not_leader} = append(hd(followers), "s", [event()])
    assert Enum.all?(stores, &(info(&1).failure == nil))

    # raft's progress for samplers (issue 14): every replica's raft log
    # holds what it applied, the leader committed its append, and each
    # loop runs (it wakes at least every heartbeat, 30 ms)
    for s <- stores do
      wait_until(fn -> info(s).loop_age_us < 5_000_000 end)
      i = info(s)
      assert i.last_index >= i.commit and i.commit >= i.applied
    end

    assert info(l).commit >= info(l).applied and info(l).applied > 0
    # each replica's raft loop and writer are named threads (one each
    # per replica; libuv's workers inherit the loop's name)
    names =
      for t <- File.ls!("/proc/self/task"), do: String.trim(File.read!("/proc/self/task/#{t}/comm"))

    assert Enum.count(names, &(&1 == "esdb-writer")) >= 3
    assert Enum.count(names, &(&1 == "esdb-raft")) >= 3
  end

  test "a planned transfer hands leadership to another voter", %{dir: dir} do
    stores = start3(dir)
    l = leader(stores)
    target = info(hd(stores -- [l])).id
    before = info(l).term
    assert before >= 1
    assert :ok = :ex_esdb_nif.cluster_transfer(l, target)
    wait_until(fn -> info(l).leader_id == target end)
    # the new leader leads in a later term, and says so
    [new] = Enum.filter(stores, &(info(&1).id == target))
    wait_until(fn -> info(new).leader end)
    assert info(new).term > before
    refute info(l).leader
    assert {:error, :not_leader} = :ex_esdb_nif.cluster_transfer(l, 0)
  end

  test "cluster calls on a single-node store and bad cluster maps", %{dir: dir} do
    {:ok, single} = :ex_esdb_nif.open("#{dir}/single", %{})
    assert {:error, :not_cluster} = :ex_esdb_nif.cluster_info(single)
    assert {:error, :not_cluster} = :ex_esdb_nif.cluster_transfer(single, 0)
    :ok = :ex_esdb_nif.close(single)

    assert {:error, {:invalid_cluster, _}} =
             :ex_esdb_nif.cluster_open("#{dir}/bad", %{}, %{address: "127.0.0.1:1"})

    # limits change what apply answers: a replica's come from the log
    assert {:error, {:invalid_option, :max_event_bytes}} =
             :ex_esdb_nif.cluster_open("#{dir}/bad", %{max_event_bytes: 100}, %{
               id: 1,
               address: "127.0.0.1:1"
             })

    assert {:error, {:invalid_address, _}} =
             :ex_esdb_nif.cluster_open("#{dir}/bad", %{}, %{id: 1, address: ""})

    assert {:error, {:invalid_members, _}} =
             :ex_esdb_nif.cluster_open("#{dir}/bad", %{}, %{
               id: 1,
               address: "127.0.0.1:1",
               members: [{0, "x"}]
             })

    assert {:error, :invalid_option} =
             :ex_esdb_nif.cluster_open("#{dir}/bad", %{durability: :bogus}, %{
               id: 1,
               address: "127.0.0.1:1"
             })
  end

  @tag timeout: 30_000
  test "a one-member cluster through ExESDB.Backend.Cluster; a closed store answers :closed at once",
       %{dir: dir} do
    [port] = free_ports(1)
    addr = "127.0.0.1:#{port}"
    nif = %{id: 1, address: addr, members: [{1, addr}], election_timeout_ms: 200, heartbeat_ms: 20}

    {:ok, h} =
      ExESDB.Backend.Cluster.open("#{dir}/one", %{
        durability: :nosync,
        cluster: %{store_id: :one, config: %{nif: nif, nodes: %{1 => node()}}}
      })

    {:ok, limits} = ExESDB.Backend.Cluster.limits(h)
    store = %ExESDB.Store{store_id: :one, handle: h, timeout: 60_000, limits: limits}
    assert :ok = ExESDB.Backend.Cluster.submit(store, {:checkpoint_put, "c", 1, "def"}, [])
    assert {:ok, {"c", 1, "def", _}} = ExESDB.Backend.Cluster.checkpoint_get(store, "c")
    assert {:ok, %{leader: n, leader?: true}} = ExESDB.Backend.Cluster.info(h)
    assert n == node()

    :ok = ExESDB.Backend.Cluster.close(h)
    # not retried until the 60 s timeout: nothing here can route it
    assert {:error, :closed} =
             ExESDB.Backend.Cluster.submit(store, {:checkpoint_put, "c", 2, "def"}, [])
  end

  test "a leader that loses its quorum answers its pending append outcome_unknown", %{dir: dir} do
    stores = start3(dir)
    l = leader(stores)
    Enum.each(stores -- [l], &:ex_esdb_nif.close/1)
    ref = make_ref()
    :ok = :ex_esdb_nif.append(l, ref, "s", :any, [event()])
    # it steps down once it has not heard from a quorum for an election timeout
    assert_receive {^ref, {:error, :outcome_unknown}}, 5_000
    wait_until(fn -> not info(l).leader end)
    assert {:error, :not_leader} = append(l, "s", [event()])
  end

  # Promoting a member nobody answers for waits for its catch-up (raft
  # gives up after about 5 s). That wait must not hold the store's lock:
  # a close meanwhile goes ahead and answers the call. Before, the close
  # waited for the call, which then answered raft's :io_error.
  @tag timeout: 30_000
  test "a membership call waiting on raft does not hold up a close", %{dir: dir} do
    [port, nobody] = free_ports(2)
    addr = "127.0.0.1:#{port}"

    {:ok, s} =
      :ex_esdb_nif.cluster_open("#{dir}/one", %{durability: :nosync}, %{
        id: 1,
        address: addr,
        members: [{1, addr}],
        election_timeout_ms: 300,
        heartbeat_ms: 30
      })

    wait_until(fn -> info(s).leader end)
    assert :ok = :ex_esdb_nif.cluster_add(s, 2, "127.0.0.1:#{nobody}")
    assign = Task.async(fn -> :ex_esdb_nif.cluster_assign(s, 2, :voter) end)

    wait_until(fn ->
      Process.info(assign.pid, :current_function) ==
        {:current_function, {:ex_esdb_nif, :cluster_assign, 3}}
    end)

    assert :ok = :ex_esdb_nif.close(s)
    assert {:error, reason} = Task.await(assign, 10_000)
    assert reason in [:closed, :outcome_unknown]
  end
end
