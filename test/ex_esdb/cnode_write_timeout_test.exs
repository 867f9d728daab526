defmodule ExESDB.CNodeWriteTimeoutTest do
  # The C node backend's write past its time, as the NIF backend's
  # (write_timeout_test): {:error, :timeout} means the C node withdrew it
  # from its writer queue (cancel) and it is never applied;
  # {:error, :outcome_unknown} that the writer had it. The C node's
  # writer is kept busy by a large append sent to it straight, so that
  # small ones wait in its queue.
  use ExUnit.Case, async: false

  import ExESDB.Test.ClusterHelpers, only: [pause_os_process!: 1]

  alias ExESDB.{NewEvent, Streams, Test.CNodeBackend}

  @moduletag timeout: 300_000

  defp raw(cnode, request) do
    ref = make_ref()
    send({:esdb, cnode}, {:call, self(), ref, request})
    ref
  end

  defp round(s, cnode, r) do
    big = for i <- 1..20, do: {<<r::64, i::64>>, "t", :binary.copy("x", 1_048_576), "", nil, nil}
    bref = raw(cnode, {:append, "big", :any, big})

    answers =
      for i <- 1..20 do
        id = "r#{r}-#{i}"
        {id, Streams.append_events(s, id, :no_stream, [%NewEvent{event_type: "t", data: i}])}
      end

    assert_receive {^bref, {:ok, _, _}}, 60_000
    # the writer answers in queue order: past this one, all are answered
    last = raw(cnode, {:append, "last", :any, [{<<r::64, 0::64>>, "t", "", "", nil, nil}]})
    assert_receive {^last, {:ok, _, _}}, 60_000
    answers
  end

  @tag store_opts: [timeout: 1]
  test "a timed-out append was withdrawn and is never applied", context do
    %{store: s} = CNodeBackend.start_store(context)
    cnode = ExESDB.Backend.CNode.node_name(%{store_id: s})

    answers =
      Enum.reduce_while(1..10, [], fn r, acc ->
        acc = acc ++ round(s, cnode, r)

        if Enum.any?(acc, &match?({_, {:error, :timeout}}, &1)),
          do: {:halt, acc},
          else: {:cont, acc}
      end)

    assert Enum.any?(answers, &match?({_, {:error, :timeout}}, &1))

    for {id, answer} <- answers do
      # (the store's 1 ms timeout would time a read out too)
      ref = raw(cnode, {:stream_info, id})
      assert_receive {^ref, {:ok, version, _, _}}, 10_000

      case answer do
        {:error, :timeout} -> assert version == 0, "#{id} was applied after :timeout"
        {:ok, 1} -> assert version == 1
        {:error, :outcome_unknown} -> assert version in [0, 1]
      end
    end
  end

  @tag store_opts: [timeout: 400]
  test "a write to a C node that answers nothing, not even the cancel, ends by its " <>
         "deadline: :outcome_unknown",
       context do
    %{store: s} = CNodeBackend.start_store(context)
    os_pid = ExESDB.CNode.Launcher.os_pid(s)
    # stopped: neither the append nor its cancel is answered
    pause_os_process!(os_pid)
    on_exit(fn -> System.cmd("kill", ["-CONT", "#{os_pid}"], stderr_to_stdout: true) end)

    try do
      t0 = System.monotonic_time(:millisecond)
      answer = Streams.append_events(s, "stopped", :any, [%NewEvent{event_type: "t", data: 1}])
      elapsed = System.monotonic_time(:millisecond) - t0
      assert answer == {:error, :outcome_unknown}
      # the cancel's wait is a slice of the caller's time, not on top of it
      assert elapsed <= 400 + 250, "took #{elapsed} ms"
    after
      System.cmd("kill", ["-CONT", "#{os_pid}"])
    end
  end
end
