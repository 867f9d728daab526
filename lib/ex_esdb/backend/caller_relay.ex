defmodule ExESDB.Backend.CallerRelay do
  @moduledoc false
  # One relay process per caller, backend and store, shared by the
  # routing backends (Cluster, CNode): it runs the caller's async
  # commands one at a time in the order sent (a checkpoint written after
  # another lands after it) without blocking the caller, and a sync
  # command of a caller that has sent async ones after them (else a
  # delete could land before a put sent earlier, which would bring the
  # deleted back). The backend gives the routing as a function; the
  # relay ends with the caller. Kept in the caller's process dictionary
  # under {backend, :relay, store_id}.

  @doc """
  Runs `route` (a 0-arity function) in the caller's relay for `backend`
  and `store_id`, after the caller's earlier commands; its result goes
  to the caller as `{ref, result}`.
  """
  @spec async(module(), term(), reference(), (() -> term())) :: :ok
  def async(backend, store_id, ref, route) do
    send(relay(backend, store_id), {:submit, route, ref})
    :ok
  end

  @doc """
  Answers `route.()`: in the caller's relay, after its async commands,
  when it has one; else here.
  """
  @spec sync(module(), term(), (() -> term())) :: term()
  def sync(backend, store_id, route) do
    case Process.get(key(backend, store_id)) do
      pid when is_pid(pid) -> after_async(pid, route)
      nil -> route.()
    end
  end

  defp after_async(pid, route) do
    mref = Process.monitor(pid)
    ref = make_ref()
    send(pid, {:submit_sync, route, ref})

    receive do
      {:relayed, ^ref, reply} ->
        Process.demonitor(mref, [:flush])
        reply

      # (it had ended: nothing of the caller's is on its way)
      {:DOWN, ^mref, _, _, _} ->
        route.()
    end
  end

  defp key(backend, store_id), do: {backend, :relay, store_id}

  defp relay(backend, store_id) do
    key = key(backend, store_id)

    case Process.get(key) do
      pid when is_pid(pid) ->
        if Process.alive?(pid), do: pid, else: new_relay(key)

      nil ->
        new_relay(key)
    end
  end

  defp new_relay(key) do
    caller = self()

    pid =
      spawn(fn ->
        mref = Process.monitor(caller)
        relay_loop(caller, mref)
      end)

    Process.put(key, pid)
    pid
  end

  # Commands one at a time, in the order the caller sent them; ends with
  # the caller.
  defp relay_loop(caller, mref) do
    receive do
      {:submit, route, ref} ->
        send(caller, {ref, route.()})
        relay_loop(caller, mref)

      {:submit_sync, route, ref} ->
        send(caller, {:relayed, ref, route.()})
        relay_loop(caller, mref)

      {:DOWN, ^mref, _, _, _} ->
        :ok
    end
  end
end
