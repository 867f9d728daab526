defmodule ExESDB.ClusterGatewayTest do
  # The gateway's retry loop remembers a try whose outcome it could not
  # learn: a later "not written" answer (no leader, a leader elsewhere, out
  # of time) is then no answer for a write that may be committed.
  use ExUnit.Case, async: true

  alias ExESDB.Backend.Cluster

  @append {:append, "s", 0, []}
  @unknown {:error, :outcome_unknown}

  test "a definite answer after an unknown one is :outcome_unknown" do
    for final <- [
          {:error, {:not_leader, :n@h}},
          {:error, {:not_leader, nil}},
          {:error, :no_quorum},
          {:error, :timeout},
          {:error, :not_leader},
          {:error, :closed},
          {:error, :store_not_started},
          {:error, {:unreachable, :noconnection}},
          # a replica that failed refuses before proposing: not written
          # by that try, but the first may be committed
          {:error, {:store_failed, :disk_full}}
        ],
        first <- [@unknown, {:error, {:unreachable, :noconnection}}] do
      assert Cluster.outcome(@append, [first, {:error, :not_leader}], final) == @unknown
    end
  end

  test "out of time without a leader taking it: the words of the error vocabulary" do
    h = %Cluster{nodes: %{1 => :a@h, 2 => :b@h}}

    for e <- [{:error, :not_leader}, {:error, {:unreachable, :not_connected}}] do
      # this node leads by now: the write never reached a leader in time
      assert Cluster.leaderless({:ok, %{leader: true, leader_id: 1}}, e, h) == {:error, :timeout}
      assert Cluster.leaderless({:ok, %{leader: false, leader_id: 0}}, e, h) == {:error, :no_quorum}

      assert Cluster.leaderless({:ok, %{leader: false, leader_id: 2}}, e, h) ==
               {:error, {:not_leader, :b@h}}

      # this node's replica could not say either (closing): no leader known
      assert Cluster.leaderless({:error, :closed}, e, h) == {:error, :no_quorum}
    end

    # answers of the vocabulary stand
    for e <- [{:error, :closed}, {:error, :store_not_started}],
        do: assert(Cluster.leaderless({:error, :closed}, e, h) == e)
  end

  test "without an unknown try the last answer stands" do
    replies = [{:error, :not_leader}, {:error, :store_not_started}]
    assert Cluster.outcome(@append, replies, {:error, :no_quorum}) == {:error, :no_quorum}

    assert Cluster.outcome(@append, replies, {:error, {:not_leader, nil}}) ==
             {:error, {:not_leader, nil}}

    assert Cluster.outcome(@append, [], {:error, :timeout}) == {:error, :timeout}
    # a leader this node could not connect to was sent nothing
    not_sent = {:error, {:unreachable, :not_connected}}
    assert Cluster.outcome(@append, [not_sent], {:error, :no_quorum}) == {:error, :no_quorum}
  end

  test "an answer the retry proves stands after an unknown try" do
    # a marked append retry finds its events and answers the first result
    assert Cluster.outcome(@append, [@unknown], {:ok, 3}) == {:ok, 3}

    assert Cluster.outcome(@append, [@unknown], {:error, :wrong_expected_version}) ==
             {:error, :wrong_expected_version}
  end

  test "a retried delete answering 'already gone' after an unknown try is :outcome_unknown" do
    # gone before the first try, or deleted by it: the replies cannot tell
    assert Cluster.outcome({:delete_stream, "s", :any}, [@unknown], {:error, :stream_deleted}) ==
             @unknown

    assert Cluster.outcome({:delete_stream, "s", :any}, [], {:error, :stream_deleted}) ==
             {:error, :stream_deleted}

    assert Cluster.outcome({:checkpoint_delete, "c"}, [@unknown], {:error, :subscription_not_found}) ==
             @unknown

    assert Cluster.outcome({:checkpoint_delete, "c"}, [], {:error, :subscription_not_found}) ==
             {:error, :subscription_not_found}
  end

  # Membership and transfer calls to the leader answer, never raise.
  test "a leader this node cannot name or call" do
    assert Cluster.call_leader(nil, :transfer_on_leader, [:s, 0], 1000) ==
             {:error, {:not_leader, nil}}

    gone = :ex_esdb_nobody@nohost

    assert Cluster.call_leader(gone, :transfer_on_leader, [:s, 0], 1000) ==
             {:error, {:unreachable, gone}}
  end
end
