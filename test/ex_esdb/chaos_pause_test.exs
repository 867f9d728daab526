defmodule ExESDB.ChaosPauseTest do
  # Issue 14: the leader of a 3-node cluster paused (SIGSTOP) until the
  # others elect a new one, then resumed, four times under load from 9
  # clients on 2 shared streams. Not in `make test` yet: on main at
  # 7f722f5 and b12aaa3 about 1 run in 3 fails with duplicate_events (2 to
  # 15 per run). One of them: an append of one
  # event (:stream_exists, through a follower) answered {:ok, 177} once,
  # its event stored at versions 174 and 177: the gateway's own retry
  # after an unknown outcome wrote it again because other appends came in
  # between (issue 12: a retry with the same ids must not write twice).
  # Fixed by bf843b2: the gateway marks its retries and the store looks
  # for a marked append among the stream's last 1,024 versions
  # (docs/FORMAT.md, "Retries"): 2 of 6 runs failed before it, 0 of 10
  # after. Run with ESDB_CHAOS_PAUSE=1 (`make chaos-cluster`).
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers

  alias ExESDB.Chaos.Cluster

  @moduletag skip:
               (not cluster_support?() && "no raft in this build (make raft)") ||
                 (System.get_env("ESDB_CHAOS_PAUSE") in [nil, "", "0"] &&
                    "set ESDB_CHAOS_PAUSE=1 (make chaos-cluster)")
  @moduletag timeout: 300_000

  setup do: Cluster.start(:chaos, 3)

  defp os_pid(node), do: to_string(:erpc.call(node, :os, :getpid, []))

  test "the leader paused past the election timeout, four times", ctx do
    nemesis = fn ->
      for _ <- 1..4 do
        wait_until(
          fn -> Enum.all?(ctx.nodes, &(Cluster.info(ctx.store, &1).applied > 20)) end,
          30_000
        )

        leader = Cluster.agreed_leader(ctx.store, ctx.nodes)
        pid = os_pid(leader)
        pause_os_process!(pid)
        others = ctx.nodes -- [leader]

        wait_until(
          fn -> Enum.all?(others, &(Cluster.info(ctx.store, &1).leader in others)) end,
          30_000
        )

        {_, 0} = System.cmd("kill", ["-CONT", pid])
      end
    end

    %{verdict: v, results: path} =
      Cluster.run(ctx, nemesis: nemesis, ops: 400, streams: 2, clients: 9, label: "cluster3-pause")

    assert v.valid?,
           "#{inspect(v.counts)} #{path}\n#{inspect(v.anomalies, pretty: true, limit: 10)}"

    assert v.stats.acknowledged > 0
  end
end
