// The longest log line, in UTF-16 units: the agent cuts longer output into several lines of at most this,
// and the scheduler cuts (and marks) any longer line it is sent. One number for both sides.
export const MAX_LOG_LINE_CHARS = 16 * 1024;
