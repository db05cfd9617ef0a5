import { useQuery } from '@tanstack/react-query';
import { api } from './api.ts';

/** The signed-in session (cached): who, until when, and whether it may act (delegation). */
export function useSession() {
  return useQuery({ queryKey: ['session'], queryFn: api.session, staleTime: 60_000 });
}
