defmodule ExESDB.CNodeOwnerWriteTimeoutTest do
  # A persistent subscription's own checkpoint write (through its claim)
  # that its C node does not answer in time may have been applied: the
  # answer is {:error, :outcome_unknown}, as any write's the C node took
  # (README: {:error, :timeout} is a write withdrawn, never applied).
  # delete_subscription is where a caller sees it. The C node is stopped
  # (SIGSTOP) with the delete sent; a real C node launched by the store.
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers, only: [pause_os_process!: 1]
  alias ExESDB.Subscriptions
  alias ExESDB.Test.CNodeBackend

  @moduletag timeout: 120_000

  @tag store_opts: [timeout: 500]
  test "a delete_subscription its C node does not answer in time: :outcome_unknown", context do
    %{store: s} = CNodeBackend.start_store(context)
    {:ok, _} = Subscriptions.subscribe_to(s, "stopped", {:by_event_type, "t"})
    os_pid = ExESDB.CNode.Launcher.os_pid(s)
    pause_os_process!(os_pid)
    on_exit(fn -> System.cmd("kill", ["-CONT", "#{os_pid}"], stderr_to_stdout: true) end)

    try do
      assert {:error, :outcome_unknown} = Subscriptions.delete_subscription(s, "stopped")
    after
      System.cmd("kill", ["-CONT", "#{os_pid}"])
    end
  end
end
