defmodule ExESDB.DemoTest do
  # `make run`'s demo on a store whose demo streams were deleted in an
  # earlier session: the producers say so and stop; nothing crashes.
  use ExUnit.Case, async: false

  alias ExESDB.{NewEvent, Streams}
  import ExESDB.Test.SubscriptionHelpers, only: [wait_until: 1]

  test "the demo survives its own streams being deleted" do
    dir = Path.join(System.tmp_dir!(), "ex_esdb_test/demo_#{ExESDB.Test.Unique.id()}")
    File.rm_rf!(dir)
    on_exit(fn -> File.rm_rf(dir) end)

    {:ok, sup} = ExESDB.System.start_link(store_id: :demo, data_dir: dir, durability: :nosync)

    for n <- 1..3 do
      stream = "account-#{n}"
      {:ok, 1} = Streams.append_events(:demo, stream, :any, [%NewEvent{event_type: "x"}])
      :ok = Streams.delete_stream(:demo, stream, :any)
    end

    Process.unlink(sup)
    :ok = ExESDB.System.stop(:demo)

    ExUnit.CaptureIO.capture_io(fn ->
      :ok = ExESDB.Demo.start(data_dir: dir, durability: :nosync)
      out = fn -> elem(StringIO.contents(Process.group_leader()), 1) end
      wait_until(fn -> length(String.split(out.(), ", stopping")) == 4 end)
      assert out.() =~ "account-1: :stream_deleted, stopping"
    end)

    :ok = ExESDB.System.stop(:demo)
  end
end
