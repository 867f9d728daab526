defmodule ExESDB.Backend.Await do
  @moduledoc false
  # The {Ref, Reply} protocol, written once: a backend queues a command
  # tagged with a fresh reference and the store answers later with
  # {Ref, Reply} to the caller. The caller waits a bounded time and then
  # withdraws the command if it can.

  @doc """
  Queue a command with `submit.(ref)` and wait `timeout` for its reply.
  `submit` answers `:ok` (queued) or the error that refused it. On time
  out `cancel.(ref)` withdraws it: `:ok` (never applied) gives
  `{:error, :timeout}`; `:not_queued` (taken already) gives a reply that
  came meanwhile, or `{:error, :outcome_unknown}` (its late reply comes
  to the mailbox).
  """
  @spec call((reference() -> :ok | {:error, term()}), timeout(), (reference() -> :ok | :not_queued)) ::
          term()
  def call(submit, timeout, cancel) do
    ref = make_ref()

    case submit.(ref) do
      :ok -> await(ref, timeout, cancel)
      {:error, _} = error -> error
    end
  end

  @doc "Wait for the reply to `ref` (see `call/3`)."
  @spec await(reference(), timeout(), (reference() -> :ok | :not_queued)) :: term()
  def await(ref, timeout, cancel) do
    receive do
      {^ref, reply} -> reply
    after
      timeout -> give_up(ref, cancel)
    end
  end

  defp give_up(ref, cancel) do
    case cancel.(ref) do
      :ok ->
        {:error, :timeout}

      :not_queued ->
        receive do
          {^ref, reply} -> reply
        after
          0 -> {:error, :outcome_unknown}
        end
    end
  end
end
