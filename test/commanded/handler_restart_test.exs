# Issue 10 item 4 as Commanded meets it (COMMANDED_PATH, `make
# test-commanded`): an event handler killed and restarted by its supervisor
# subscribes again while its old subscription is still stopping. The
# restarted handler must not crash (it used to exit with {:normal,
# {GenServer, :call, ...}} from subscribe_to) and handles what follows.
if Code.ensure_loaded?(Commanded.EventStore.Adapter) do
  defmodule ExESDB.Commanded.HandlerRestartTest do
    use ExUnit.Case, async: false

    alias Commanded.EventStore.EventData

    defmodule Pinged do
      defstruct [:n]
    end

    defmodule App do
      use Commanded.Application, otp_app: :ex_esdb
    end

    defmodule Handler do
      use Commanded.Event.Handler,
        application: ExESDB.Commanded.HandlerRestartTest.App,
        name: "restart_test_handler",
        start_from: :origin

      # runs in the supervisor, once for every start of the handler
      @impl true
      def init(config) do
        send(:handler_restart_test, :starting)
        {:ok, config}
      end

      @impl true
      def handle(%Pinged{n: n}, _metadata) do
        send(:handler_restart_test, {:handled, self(), n})
        :ok
      end
    end

    setup do
      dir = Path.join(System.tmp_dir!(), "ex_esdb_restart_#{ExESDB.Test.Unique.id()}")
      on_exit(fn -> File.rm_rf(dir) end)
      Process.register(self(), :handler_restart_test)

      start_supervised!(
        {App, event_store: [adapter: ExESDB.Commanded.Adapter, data_dir: dir, durability: :nosync]}
      )

      :ok
    end

    defp ping(n) do
      event = %EventData{event_type: "ping", data: %Pinged{n: n}, metadata: %{}}
      :ok = Commanded.EventStore.append_to_stream(App, "pings", :any_version, [event])
    end

    test "a handler restarted right after it was killed subscribes again without crashing" do
      # its own supervisor, allowing every restart: a crash shows as a
      # second start, not as the supervisor giving up (stopped before App)
      start_supervised!(%{
        id: :handlers,
        type: :supervisor,
        start: {Supervisor, :start_link, [[Handler], [strategy: :one_for_one, max_restarts: 1_000]]}
      })

      assert_receive :starting
      ping(0)
      assert_receive {:handled, handler, 0}

      Enum.reduce(1..20, handler, fn n, handler ->
        # killed while its subscription runs: the restarted handler's
        # subscribe_to finds it still registered, stopping
        Process.exit(handler, :kill)
        assert_receive :starting
        ping(n)
        assert_receive {:handled, restarted, ^n}, 5_000
        refute restarted == handler
        # one start only: the restarted handler did not crash
        refute_received :starting
        restarted
      end)
    end
  end
end
