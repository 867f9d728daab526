# A Commanded event handler on a follower of a 3-node cluster (this node
# and two :peer nodes; COMMANDED_PATH, `make test-commanded`) while
# leadership moves mid-stream (transferred, or the leader's store
# stopped). Its persistent subscription runs on the leader; the handler
# stops on its DOWN and its restart subscribes on the new leader
# (follow_leader: false: the store does not move it as well). The handler
# must see every event at least once, in order, subscribe at its first
# try, and not crash-loop (its supervisor keeps OTP's default restart
# intensity, 3 in 5 s).
if Code.ensure_loaded?(Commanded.EventStore.Adapter) and
     ExESDB.Test.ClusterHelpers.cluster_support?() do
  defmodule ExESDB.Commanded.ClusterHandlerTest do
    use ExUnit.Case, async: false

    import ExESDB.Test.ClusterHelpers, only: [wait_until: 2]

    alias Commanded.EventStore.EventData
    alias ExESDB.Commanded.{Adapter, AdapterCase}
    alias ExESDB.Test.ClusterBackend

    @moduletag timeout: 180_000

    defmodule Pinged do
      defstruct [:n]
    end

    defmodule App do
      use Commanded.Application, otp_app: :ex_esdb
    end

    defmodule Handler do
      use Commanded.Event.Handler,
        application: ExESDB.Commanded.ClusterHandlerTest.App,
        name: "cluster_handler",
        start_from: :origin

      # runs in the supervisor, once for every start of the handler
      @impl true
      def init(config) do
        send(:cluster_handler_test, :starting)
        {:ok, config}
      end

      @impl true
      def handle(%Pinged{n: n}, _metadata) do
        send(:cluster_handler_test, {:handled, n})
        :ok
      end
    end

    setup context do
      {:ok, _, %{store: store}} = Adapter.child_spec(App, [])
      dir = Path.join(System.tmp_dir!(), "ex_esdb_chandler_#{ExESDB.Test.Unique.id()}")
      opts = ClusterBackend.start_peers(store, dir, context)
      Process.register(self(), :cluster_handler_test)

      config = [adapter: Adapter, data_dir: "#{dir}/local"] ++ Keyword.delete(opts, :store_id)
      start_supervised!({App, event_store: config})
      ClusterBackend.wait_leader(store)
      [a, b] = :persistent_term.get({ClusterBackend, :peers})
      AdapterCase.lead(store, a)
      %{store: store, peers: [a, b], dir: dir, opts: opts}
    end

    # (tried again while an election runs)
    defp ping(n) do
      event = %EventData{event_type: "ping", data: %Pinged{n: n}, metadata: %{}}

      wait_until(
        fn -> Commanded.EventStore.append_to_stream(App, "pings", :any_version, [event]) == :ok end,
        30_000
      )
    end

    # every {:handled, n} so far, in arrival order
    defp handled(acc) do
      receive do
        {:handled, n} -> handled([n | acc])
      after
        0 -> acc
      end
    end

    test "leadership moving while events are written: every event at least once, in order, no crash loop",
         context do
      log = ExUnit.CaptureLog.capture_log(fn -> run(context) end)
      # the restarted handler subscribed at its first try: no subscription
      # left for its stopped self in the way (Commanded backs off >= 1 s
      # on an error, growing), and no {:subscribed, _} it did not ask for
      refute log =~ "failed to subscribe"
      refute log =~ "received unexpected message"
    end

    test "the leader's store stopped mid-stream and started again: every event at least once, in order, no crash loop",
         context do
      log = ExUnit.CaptureLog.capture_log(fn -> run_stop(context) end)
      refute log =~ "failed to subscribe"
      refute log =~ "received unexpected message"
    end

    defp run_stop(%{store: store, peers: [a, _], dir: dir, opts: opts}) do
      handlers = start_handlers()
      for i <- 1..20, do: ping(i)
      :ok = :erpc.call(a, ExESDB.System, :stop, [store])
      for i <- 21..40, do: ping(i)
      :ok = :erpc.call(a, ExESDB.Test.ClusterPeer, :start, [[data_dir: "#{dir}/#{a}"] ++ opts])
      for i <- 41..60, do: ping(i)
      check(handlers, 60)
      # one restart for the stop (one more if leadership moves again
      # when the stopped node is back)
      assert length(flush_starts([])) <= 2
    end

    defp start_handlers do
      handlers =
        start_supervised!(%{
          id: :handlers,
          type: :supervisor,
          start: {Supervisor, :start_link, [[Handler], [strategy: :one_for_one]]}
        })

      assert_receive :starting
      handlers
    end

    defp run(%{store: store, peers: [a, b]}) do
      handlers = start_handlers()
      # three moves (a -> b -> a -> b), twenty events before each and after
      # the last; this node stays a follower
      for {leader, round} <- Enum.with_index([b, a, b]) do
        for i <- 1..20, do: ping(round * 20 + i)
        AdapterCase.lead(store, leader)
      end

      for i <- 61..80, do: ping(i)
      check(handlers, 80)
      # at most one restart per move (its subscription's DOWN)
      assert length(flush_starts([])) <= 3
    end

    # the handler saw 1..last, and its supervisor did not give up
    defp check(handlers, last) do
      seen =
        wait_until(
          fn ->
            seen = Process.get(:seen, []) |> then(&handled/1)
            Process.put(:seen, seen)
            if last in seen, do: Enum.reverse(seen)
          end,
          60_000
        )

      # every event at least once; the first sight of each in order (a
      # redelivery after a move starts again from the checkpoint)
      assert Enum.sort(Enum.uniq(seen)) == Enum.to_list(1..last)
      assert Enum.uniq(seen) == Enum.to_list(1..last)
      # the handlers' supervisor did not give up
      assert Process.alive?(handlers)
    end

    defp flush_starts(acc) do
      receive do
        :starting -> flush_starts([:starting | acc])
      after
        0 -> acc
      end
    end
  end
end
