# A Commanded event handler subscribed to a stream that was deleted
# (COMMANDED_PATH, `make test-commanded`): its subscription must not end
# (it used to exit with {:catch_up_failed, :stream_deleted}, which stopped
# the handler, whose restart subscribed into the same end: a crash loop).
if Code.ensure_loaded?(Commanded.EventStore.Adapter) do
  defmodule ExESDB.Commanded.DeletedStreamTest do
    use ExUnit.Case, async: false

    import ExESDB.Test.SubscriptionHelpers, only: [wait_until: 1]

    alias Commanded.EventStore.EventData

    defmodule Pinged do
      defstruct [:n]
    end

    defmodule App do
      use Commanded.Application, otp_app: :ex_esdb
    end

    defmodule Handler do
      use Commanded.Event.Handler,
        application: ExESDB.Commanded.DeletedStreamTest.App,
        name: "deleted_stream_handler",
        subscribe_to: "doomed",
        start_from: :origin

      # runs in the supervisor, once for every start of the handler
      @impl true
      def init(config) do
        send(:deleted_stream_test, :starting)
        {:ok, config}
      end

      @impl true
      def handle(%Pinged{n: n}, _metadata) do
        send(:deleted_stream_test, {:handled, self(), n})
        :ok
      end
    end

    setup do
      dir = Path.join(System.tmp_dir!(), "ex_esdb_deleted_#{ExESDB.Test.Unique.id()}")
      on_exit(fn -> File.rm_rf(dir) end)
      Process.register(self(), :deleted_stream_test)

      start_supervised!(
        {App, event_store: [adapter: ExESDB.Commanded.Adapter, data_dir: dir, durability: :nosync]}
      )

      :ok
    end

    test "a handler on a deleted stream stays subscribed instead of crash-looping" do
      {_adapter, meta} = Commanded.Application.event_store_adapter(App)

      start_supervised!(%{
        id: :handlers,
        type: :supervisor,
        start: {Supervisor, :start_link, [[Handler], [strategy: :one_for_one, max_restarts: 1_000]]}
      })

      assert_receive :starting

      events = for n <- 1..3, do: %EventData{event_type: "ping", data: %Pinged{n: n}, metadata: %{}}
      :ok = Commanded.EventStore.append_to_stream(App, "doomed", :any_version, events)

      handler =
        for(n <- 1..3, do: assert_receive({:handled, handler, ^n}, 5_000)) |> hd() |> elem(1)

      assert :ok = ExESDB.Streams.delete_stream(meta.store, "doomed")

      # restarted, the handler subscribes again: the catch-up reads the
      # deleted stream
      Process.exit(handler, :kill)
      assert_receive :starting

      registry = ExESDB.Subscriptions.registry(meta.store)

      wait_until(fn ->
        case Registry.lookup(registry, "deleted_stream_handler") do
          [{sub, _}] ->
            try do
              not :sys.get_state(sub).sub.catching_up
            catch
              :exit, _ -> false
            end

          [] ->
            false
        end
      end)

      # caught up past the deleted stream, running, and the handler was
      # started once only
      refute_received :starting
      refute_received {:handled, _, _}
    end
  end
end
