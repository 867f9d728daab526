defmodule ExESDB.Test.FakePubSub do
  @moduledoc false
  # broadcast/3 like Phoenix.PubSub's; "name" is the pid to tell.
  def broadcast(pid, topic, message), do: send(pid, {:broadcast, topic, message})
end
