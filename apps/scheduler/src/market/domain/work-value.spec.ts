import { workValueAt } from './work-value.js';

describe(workValueAt.name, () => {
  it('prices a CPU or GPU hour at 3600 times the rate per CPU-second and a megabyte at the rate, exactly', () => {
    expect(workValueAt('0.0001465376')).toEqual({ CPUHour: '0.52753536', GPUHour: '0.52753536', InputMByte: '0.0001465376', OutputMByte: '0.0001465376' });
    expect(workValueAt('0')).toEqual({ CPUHour: '0', GPUHour: '0', InputMByte: '0', OutputMByte: '0' });
  });
  it('refuses a rate that is not a non-negative decimal', () => {
    expect(() => workValueAt('-1')).toThrow(RangeError);
    expect(() => workValueAt('lots')).toThrow(RangeError);
  });
});
